import pytest

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c06_scale_balance import SCALES, Kind, Result, ScaleBalance
from skiplab.store import Store


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        primary, replica = reproduce(
            select_claims("C06"), scale="tiny", store=store, workdir=tmp_path, replicate=True
        )
        assert primary.status == "holds", primary.reason
        assert replica.status == "holds", replica.reason
        row = store.latest_verdict("C06", "tiny")
        rep = store.latest_verdict("C06", "tiny", seedset="replicate")
        assert row is not None and rep is not None and rep.seeds == [1000, 1001, 1002]
        num = row.evidence["numbers"]
        assert num["standard_ratio_loglog_slope"] == pytest.approx(-1.0, abs=0.05)
        assert abs(num["balanced_ratio_loglog_slope"]) < 1e-3
        assert num["balanced_max_homogeneity_error"] < 1e-5
        # the balanced net's worst input scale beats the standard net's by more than the seed
        # spread: the paired interval over 3 seeds lies above 0 (and the control passed)
        assert num["worst_gain_lo"] > 0.02 and num["worst_gain"] > num["worst_gain_lo"]
        assert {c["kind"] for c in row.evidence["checks"]} == {"control", "claim", "evidence"}
        assert all(c["passed"] for c in row.evidence["checks"])
        assert len(row.evidence["literature"]) == 2
        # three seeds x (two ratio runs and 2 kinds x 3 input scales), each with metrics
        assert len(row.run_ids) == 24
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        claim = select_claims("C06")[0]
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["scale_balance.png"]
        assert (tmp_path / "f" / "scale_balance.png").stat().st_size > 10_000


def _result(balanced: list[list[float]], standard: list[list[float]]) -> Result:
    """Three seeds; ``balanced`` and ``standard`` give per input scale the seeds' accuracies."""
    scales = (1e-3, 1.0, 1e3)
    std = Kind([[1000.0, 1.0, 0.001]] * 3, [[1.0]] * 3, dict(zip(scales, standard)), 1e6, -1.0)
    bal = Kind([[0.98, 0.98, 0.98]] * 3, [[1e-7]] * 3, dict(zip(scales, balanced)), 1.0, 0.0)
    return Result(SCALES["tiny"], [0, 1, 2], {"standard": std, "balanced": bal})


def test_criterion():
    claim = ScaleBalance()
    std = [[0.10, 0.12, 0.11], [0.40, 0.42, 0.41], [0.20, 0.18, 0.22]]
    same = [[0.30, 0.32, 0.31]] * 3
    assert claim.decide(_result(same, std)).status == "holds"
    spread = [[0.30, 0.32, 0.31], [0.35, 0.37, 0.36], [0.30, 0.32, 0.31]]  # 5 points
    assert claim.decide(_result(spread, std)).status == "fails"
    # trains at scale 1 and is scale-free, but its worst scale is below the standard net's
    robust_std = [[0.35, 0.36, 0.34], [0.45, 0.46, 0.44], [0.40, 0.41, 0.39]]
    verdict = claim.decide(_result([[0.27, 0.28, 0.26]] * 3, robust_std))
    assert verdict.status == "fails" and "better worst-scale accuracy" in verdict.reason
    # better on average, but one seed reverses it: the paired interval contains 0
    mixed = [[0.30, 0.26, 0.31]] * 3
    mixed_std = [[0.10, 0.30, 0.11], [0.40, 0.42, 0.41], [0.20, 0.32, 0.22]]
    verdict = claim.decide(_result(mixed, mixed_std))
    assert verdict.status == "inconclusive" and "interval excludes 0" in verdict.reason
    # the balanced net did not train at scale 1: the positive control fails
    untrained = [[0.12, 0.11, 0.12]] * 3
    verdict = claim.decide(_result(untrained, [[0.1, 0.1, 0.1]] * 3))
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason
