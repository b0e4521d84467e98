"""C14: skiplab's GRU is torch's GRU, z -> 0 is an identity highway, and the carry helps it learn."""

import math

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c14_gru_residual import GATES, Curve, Result, Settings, mnist_gap
from skiplab.store import Store


def test_mnist1d_runs_on_every_seed_of_either_seed_set_unless_told():
    (claim,) = select_claims("C14")
    for s, seeds, mnist in ((claim.settings("quick"), [0, 1, 2], [0, 1, 2]),
                            (claim.settings("quick"), [1000, 1001, 1002], [1000, 1001, 1002]),
                            (Settings(mnist_seeds=1), [1000, 1001], [1000])):  # fmt: skip
        plan = claim.plan(s, seeds)
        assert sorted({s for c, s in plan if c.experiment == "mnist1d"}) == mnist
        assert sorted({s for c, s in plan if c.experiment == "gate"}) == seeds


def _result(gru: list[float], plain: list[float]) -> Result:
    """A summary whose analytic parts all pass; the MNIST-1D accuracies are the given ones."""
    n, long = len(gru), 25
    norm = {z: {long: [(1 - z) ** long + 0.01] * n} for z in GATES}
    return Result(
        [long], list(range(n)), diffs={k: [1e-12] * n for k in ("out", "h", "grad_x", "grad_params")},
        gated=norm, learned={long: [0.5] * n}, plain_half={long: [1e-12] * n},
        plain_learned={long: [1e-12] * n}, mnist_acc={"gru": gru, "plain": plain},
        mnist_curves={m: Curve([], []) for m in ("gru", "plain")}, mnist_steps=400, mnist_hidden=64,
    )  # fmt: skip


def _decide(gru: list[float], plain: list[float]) -> Verdict:
    (claim,) = select_claims("C14")
    r = _result(gru, plain)
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_criterion_on_the_mnist1d_comparison():
    gap = mnist_gap({"gru": [0.48, 0.52, 0.45], "plain": [0.11, 0.10, 0.12]})
    assert gap is not None and math.isclose(gap.mean, (0.37 + 0.42 + 0.33) / 3) and gap.lo > 0.2
    assert _decide([0.48, 0.52, 0.45], [0.11, 0.10, 0.12]).status == "holds"
    v = _decide([0.30, 0.32, 0.28], [0.35, 0.33, 0.36])  # the plain twin learns as well
    assert v.status == "fails" and "the GRU beats its plain twin" in v.reason
    v = _decide([0.50, 0.45, 0.55], [0.10, 0.60, 0.15])  # better on average, interval spans 0
    assert v.status == "inconclusive" and "excludes 0" in v.reason
    assert _decide([0.5, math.nan, 0.5], [0.1, 0.1, 0.1]).status == "inconclusive"  # diverged


def test_a_gru_at_chance_fails_the_positive_control():
    v = _decide([0.10, 0.12, 0.09], [0.10, 0.11, 0.10])  # no learning: the budget is too small
    assert v.status == "inconclusive" and "positive control failed" in v.reason
    v = _decide([0.14, 0.09, 0.11], [0.05, 0.04, 0.06])  # above the twin, not above chance
    assert v.status == "inconclusive" and "positive control failed" in v.reason


def test_c14_tiny_holds_on_both_seed_sets(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C14")
        outs = reproduce([claim], scale="tiny", store=store, workdir=tmp_path, replicate=True)
        assert [o.seeds for o in outs] == [[0, 1, 2], [1000, 1001, 1002]]
        for outcome in outs:
            assert outcome.status == "holds", outcome.reason
        row = store.latest_verdict("C14", "tiny")
        assert row is not None
        r = Result.from_json(row.evidence["summary"])
        assert max(max(v) for v in r.diffs.values()) < 1e-6
        n = row.evidence["numbers"]
        long = max(r.lengths)
        norms = [n[f"jac_T{long}_z{z}"] for z in GATES]
        assert norms[0] > 0.5 and norms[-1] < 1e-6  # highway at z -> 0, forgetting at z -> 1
        assert n[f"jac_T{long}_plain_z0.5"] < 1e-3 * n[f"jac_T{long}_z0.5"]
        # the carry helps learning: the GRU is above chance, its twin well below it, paired
        assert n["mnist1d_gru_acc"] > 0.2 and n["mnist1d_gap_lo"] > 0.05
        assert len(r.mnist_acc["gru"]) == 3
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        lit = row.evidence["literature"]
        assert [c["agrees"] for c in lit] == [None, True, None]  # tiny is not the paper's budget
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["gru_residual.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
