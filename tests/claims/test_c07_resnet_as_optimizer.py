import math

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c07_resnet_as_optimizer import (
    SCALES,
    Learned,
    ResNetAsOptimizer,
    Result,
    Unrolled,
)
from skiplab.store import Store


def _result(res_dist=1e-16, plain_dist=1e6, kkt=1e-15, cos_res=0.8, cos_plain=0.3):
    def unrolled(dist):
        return Unrolled([dist, dist], [0.7, 0.7], [30.0, 30.0], [[1.0, dist]] * 2)

    def learned(cos):
        return Learned([[cos, cos], [cos + 0.01, cos]], [[cos] * 2] * 2, [0.3, 0.3], [[1.0]] * 2)

    return Result(
        unrolled={p: {"residual": unrolled(res_dist), "plain": unrolled(plain_dist)}
                  for p in ("qp", "cls")},
        learned={"residual": learned(cos_res), "plain": learned(cos_plain)},
        kkt_vs_nullspace=[kkt, kkt], seeds=[0, 1], settings=SCALES["tiny"],
    )  # fmt: skip


def _decide(r: Result) -> Verdict:
    claim = ResNetAsOptimizer()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_criterion_holds_and_fails_on_each_part():
    assert _decide(_result()).status == "holds"
    assert _decide(_result(res_dist=1e-3)).status == "fails"  # the residual net misses KKT
    assert _decide(_result(kkt=1e-6)).status == "fails"  # the two direct solves disagree
    assert _decide(_result(plain_dist=0.1)).status == "fails"  # the plain twin reaches it too
    v = _decide(_result(cos_res=0.3, cos_plain=0.3))  # ranges overlap: not more aligned
    assert v.status == "fails" and "learned residual updates more aligned" in v.reason


def test_a_diverged_solver_is_reported_not_hidden():
    r = _result()
    r.learned["plain"] = Learned([[], []], [[], []], [math.nan, math.nan], [[], []])
    assert _decide(r).status == "fails"  # NaN cosines cannot be clearly below the residual ones


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C07"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C07", "tiny")
        assert row is not None
        num = row.evidence["numbers"]
        assert num["qp_residual_final_dist"] < 1e-6 and num["cls_residual_final_dist"] < 1e-6
        assert num["learned_residual_cos_grad"] > num["learned_plain_cos_grad"] + 0.2
        assert len(row.run_ids) == 6
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
        figs = select_claims("C07")[0].report_figures(Evidence.from_dict(row.evidence), tmp_path)
        assert [f.path for f in figs] == ["resnet_optimizer.png"]
        assert (tmp_path / "resnet_optimizer.png").stat().st_size > 10_000
