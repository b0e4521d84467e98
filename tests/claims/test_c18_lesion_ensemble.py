import pytest

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c18_lesion_ensemble import LesionEnsemble, PathGradient, Result, retained
from skiplab.diagnostics import LesionResult
from skiplab.store import Store


def test_lesions_hurt_the_plain_twin_more_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        primary, replica = reproduce(
            select_claims("C18"), scale="tiny", store=store, workdir=tmp_path, replicate=True
        )
        row = store.latest_verdict("C18", "tiny")
        rep = store.latest_verdict("C18", "tiny", seedset="replicate")
        assert row is not None and rep is not None
        # 5 seeds at tiny scale too (runs take 2 s): with 3, the paired t-interval's lower end
        # swung between 0.01 and 0.25 across machines on the same effect
        assert len(row.run_ids) == 10 and row.seeds == [0, 1, 2, 3, 4]
        assert rep.seeds == [1000, 1001, 1002, 1003, 1004]
        assert all(store.run(r).status == "completed" for r in row.run_ids + rep.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
    for out, ev in ((primary, row.evidence), (replica, rep.evidence)):
        assert out.status in ("holds", "inconclusive"), out.reason  # never reversed
        checks = {c["kind"]: c for c in ev["checks"]}
        assert checks["control"]["passed"], checks["control"]  # both intact nets learned
        n = ev["numbers"]
        # deleting one block keeps far more of the ResNet's accuracy than of the plain twin's,
        # by more than the seed spread: the paired interval lies well above 0
        assert n["residual_median_retained"] > n["plain_median_retained"] + 0.2
        assert n["retained_gain_lo"] > 0.1 and n["retained_gain_lo"] <= n["retained_gain"]
        assert {c["source"].split(",")[0] for c in ev["literature"]} == {"Veit et al. 2016"}
    (paths, *_) = row.evidence["summary"]["paths"]
    assert paths["n"] == 6 and paths["paths"] == [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]
    claim = select_claims("C18")[0]
    figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
    assert [f.path for f in figs] == ["lesions.png"]
    assert (tmp_path / "f" / "lesions.png").stat().st_size > 10_000


def _lesions(median_retained: float, base: float = 1.0) -> LesionResult:
    """An intact net at accuracy ``base`` whose single deletions keep ``median_retained``."""
    acc = 0.1 + (base - 0.1) * median_retained
    return LesionResult(base, {"blocks.0": acc, "blocks.1": acc, "blocks.2": base}, {}, [])


def _result(residual: list[float], plain: list[float], plain_base: float = 1.0) -> Result:
    lesions = {
        "residual": [_lesions(m) for m in residual],
        "plain": [_lesions(m, plain_base) for m in plain],
    }
    paths = [
        PathGradient(2, [0, 1, 2], [1.0, 0.5, 0.1], [1.0, 2.0, 1.0], [1.0, 1.0, 0.1], [1, 2, 1])
    ]
    return Result(32, 8, list(range(len(residual))), lesions, paths, [])


def test_decide_thresholds():
    claim = LesionEnsemble()
    assert retained(0.55, 1.0) == pytest.approx(0.5)
    assert claim.decide(_result([0.9, 0.85, 0.95], [0.1, 0.2, 0.0])).status == "holds"
    # reversed on average: fails
    assert claim.decide(_result([0.9, 0.8, 0.85], [0.95, 0.9, 0.92])).status == "fails"
    # the plain twin keeps too much: its interval reaches above 0.5
    assert claim.decide(_result([0.9, 0.85, 0.95], [0.6, 0.4, 0.5])).status == "inconclusive"
    # ResNet ahead on average, but the paired difference's interval contains 0
    wide = claim.decide(_result([0.95, 0.2, 0.9], [0.1, 0.3, 0.05]))
    assert wide.status == "inconclusive" and "ResNet - plain retained excludes 0" in wide.reason
    # one seed: no interval, so no decision on it
    assert claim.decide(_result([0.9], [0.1])).status == "inconclusive"
    diverged = _result([0.9, 0.85, 0.95], [0.1, 0.2, 0.0])
    diverged.diverged = ["plain seed 0: loss became nan at step 3"]
    assert claim.decide(diverged).status == "inconclusive"


def test_an_untrained_plain_twin_fails_the_positive_control():
    # the plain twin is near chance intact: its "retained" share says nothing about lesions
    verdict = LesionEnsemble().decide(_result([0.9, 0.85, 0.95], [0.1, 0.2, 0.0], plain_base=0.3))
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason
    assert "both intact nets are accurate" in verdict.reason
