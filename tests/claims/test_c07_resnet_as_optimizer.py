import math

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c07_resnet_as_optimizer import (
    SCALES,
    Learned,
    ResNetAsOptimizer,
    Result,
    Unrolled,
    cos_gap,
)
from skiplab.store import Store

SEEDS = 3


def _result(res_dist=1e-16, plain_dist=1e6, kkt=1e-15, cos_res=(0.80, 0.85, 0.78),
            cos_plain=(0.30, 0.28, 0.35), err_res=(0.2, 0.25, 0.3)):  # fmt: skip
    def unrolled(dist):
        return Unrolled([dist] * SEEDS, [0.7] * SEEDS, [30.0] * SEEDS, [[1.0, dist]] * SEEDS)

    def learned(cos, err):  # two steps per seed, both at the seed's cosine
        return Learned([[c, c] for c in cos], [[c, c] for c in cos], list(err), [[1.0]] * SEEDS)

    return Result(
        unrolled={p: {"residual": unrolled(res_dist), "plain": unrolled(plain_dist)}
                  for p in ("qp", "cls")},
        learned={"residual": learned(cos_res, err_res), "plain": learned(cos_plain, (0.3,) * 3)},
        kkt_vs_nullspace=[kkt] * SEEDS, seeds=list(range(SEEDS)), settings=SCALES["tiny"],
    )  # fmt: skip


def _decide(r: Result) -> Verdict:
    claim = ResNetAsOptimizer()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_the_alignment_gap_is_a_paired_interval_over_seeds():
    gap = cos_gap(_result())
    assert gap is not None and gap.n == SEEDS
    assert math.isclose(gap.mean, (0.50 + 0.57 + 0.43) / 3)
    assert 0 < gap.lo < gap.mean < gap.hi  # the per-seed differences 0.50, 0.57, 0.43


def test_criterion_holds_fails_and_is_inconclusive_on_each_part():
    assert _decide(_result()).status == "holds"
    assert _decide(_result(res_dist=1e-3)).status == "fails"  # the residual net misses KKT
    assert _decide(_result(kkt=1e-6)).status == "fails"  # the two direct solves disagree
    assert _decide(_result(plain_dist=0.1)).status == "fails"  # the plain twin reaches it too
    v = _decide(_result(cos_res=(0.30, 0.28, 0.35), cos_plain=(0.32, 0.30, 0.36)))
    assert v.status == "fails" and "learned residual updates more aligned" in v.reason
    # better on average, but one seed reverses: the interval includes 0
    v = _decide(_result(cos_res=(0.8, 0.9, 0.2), cos_plain=(0.3, 0.3, 0.4)))
    assert v.status == "inconclusive" and "95% interval excludes 0" in v.reason


def test_a_failed_positive_control_makes_it_inconclusive_whatever_else():
    # the residual solver is no better than predicting y = 0: the budget cannot decide
    v = _decide(_result(err_res=(0.95, 1.05, 1.0)))
    assert v.status == "inconclusive" and "positive control failed" in v.reason
    v = _decide(_result(err_res=(0.95, 1.05, 1.0), plain_dist=0.1))  # even beside a failed claim
    assert v.status == "inconclusive"


def test_a_diverged_solver_is_reported_not_hidden():
    r = _result()
    r.learned["plain"] = Learned([[]] * SEEDS, [[]] * SEEDS, [math.nan] * SEEDS, [[]] * SEEDS)
    v = _decide(r)  # NaN cosines: the alignment cannot be measured
    assert v.status == "inconclusive" and "without diverging" in v.reason
    r.learned["residual"] = r.learned["plain"]
    assert "positive control failed" in _decide(r).reason


def test_claim_holds_at_tiny_scale_and_on_the_replicate_seeds(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        outs = reproduce(
            select_claims("C07"), scale="tiny", store=store, workdir=tmp_path, replicate=True
        )
        assert [o.seedset for o in outs] == ["primary", "replicate"]
        assert outs[1].seeds == [1000, 1001, 1002]
        for out in outs:
            assert out.status == "holds", out.reason
        row = store.latest_verdict("C07", "tiny")
        assert row is not None
        num = row.evidence["numbers"]
        assert num["qp_residual_final_dist"] < 1e-6 and num["cls_residual_final_dist"] < 1e-6
        assert num["learned_residual_cos_grad"] > num["learned_plain_cos_grad"] + 0.2
        assert num["learned_cos_gap_lo"] > 0.1  # the paired interval lies well above 0
        assert num["learned_residual_error"] < 0.8  # the positive control: far below y = 0's 1
        checks = {c["name"]: c for c in row.evidence["checks"]}
        control = checks["the learned residual solver beats the zero predictor (relative error 1)"]
        assert control["kind"] == "control" and control["passed"]
        assert len(row.run_ids) == 6 * 3
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
        lit = row.evidence["literature"]
        assert [c["agrees"] for c in lit] == [None, None] and "Chen et al. 2018" in lit[0]["source"]
        figs = select_claims("C07")[0].report_figures(Evidence.from_dict(row.evidence), tmp_path)
        assert [f.path for f in figs] == ["resnet_optimizer.png"]
        assert (tmp_path / "resnet_optimizer.png").stat().st_size > 10_000
