import pytest

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c18_lesion_ensemble import LesionEnsemble, PathGradient, Result, retained
from skiplab.diagnostics import LesionResult
from skiplab.store import Store


def test_lesions_hurt_the_plain_twin_more_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C18"), scale="tiny", store=store, workdir=tmp_path)
        row = store.latest_verdict("C18", "tiny")
        assert row is not None
        assert len(row.run_ids) == 2
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
    assert out.status in ("holds", "inconclusive"), out.reason  # never reversed
    n = row.evidence["numbers"]
    # deleting one block keeps far more of the ResNet's accuracy than of the plain twin's
    assert n["residual_median_retained"] > n["plain_median_retained"] + 0.2
    (paths,) = row.evidence["summary"]["paths"]
    assert paths["n"] == 6 and paths["paths"] == [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]
    claim = select_claims("C18")[0]
    figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
    assert [f.path for f in figs] == ["lesions.png"]
    assert (tmp_path / "f" / "lesions.png").stat().st_size > 10_000


def _lesions(median_retained: float) -> LesionResult:
    """An intact net at accuracy 1.0 whose single deletions keep ``median_retained``."""
    acc = 0.1 + 0.9 * median_retained
    return LesionResult(1.0, {"blocks.0": acc, "blocks.1": acc, "blocks.2": 1.0}, {}, [])


def _result(residual: list[float], plain: list[float]) -> Result:
    lesions = {"residual": [_lesions(m) for m in residual], "plain": [_lesions(m) for m in plain]}
    paths = [
        PathGradient(2, [0, 1, 2], [1.0, 0.5, 0.1], [1.0, 2.0, 1.0], [1.0, 1.0, 0.1], [1, 2, 1])
    ]
    return Result(32, 8, list(range(len(residual))), lesions, paths, [])


def test_decide_thresholds():
    claim = LesionEnsemble()
    assert retained(0.55, 1.0) == pytest.approx(0.5)
    assert claim.decide(_result([0.9, 0.8], [0.1, 0.4])).status == "holds"
    assert claim.decide(_result([0.9, 0.8], [0.95, 0.9])).status == "fails"
    assert claim.decide(_result([0.9, 0.8], [0.6, 0.4])).status == "inconclusive"
    diverged = _result([0.9, 0.8], [0.1, 0.4])
    diverged.diverged = ["plain seed 0: loss became nan at step 3"]
    assert claim.decide(diverged).status == "inconclusive"
