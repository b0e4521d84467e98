import pytest

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.store import Store


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C06"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C06", "tiny")
        assert row is not None
        num = row.evidence["numbers"]
        assert num["standard_ratio_loglog_slope"] == pytest.approx(-1.0, abs=0.05)
        assert abs(num["balanced_ratio_loglog_slope"]) < 1e-3
        assert num["balanced_max_homogeneity_error"] < 1e-5
        # two ratio runs and 2 kinds x 3 input scales trained, each with per-step metrics
        assert len(row.run_ids) == 8
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        claim = select_claims("C06")[0]
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["scale_balance.png"]
        assert (tmp_path / "f" / "scale_balance.png").stat().st_size > 10_000


def test_criterion():
    from skiplab.claims.c06_scale_balance import SCALES, Kind, Result, ScaleBalance

    def result(balanced_acc):
        std = Kind(
            [[1000.0, 1.0, 0.001]], [[1.0]], {1e-3: [0.1], 1.0: [0.4], 1e3: [0.2]}, 1e6, -1.0
        )
        bal = Kind(
            [[0.98, 0.98, 0.98]], [[1e-7]], dict(zip((1e-3, 1.0, 1e3), balanced_acc)), 1.0, 0.0
        )
        return Result(SCALES["tiny"], [0], {"standard": std, "balanced": bal})

    claim = ScaleBalance()
    assert claim.decide(result([[0.3], [0.3], [0.3]])).status == "holds"
    assert claim.decide(result([[0.3], [0.35], [0.3]])).status == "fails"  # 5-point spread
    assert claim.decide(result([[0.05], [0.05], [0.05]])).status == "fails"  # worse worst scale
