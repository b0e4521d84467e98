import pytest

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.store import Store

RHO = 0.1


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C02"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        row = store.latest_verdict("C02", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        for branch in ("linear", "tanh", "worst"):
            for depth in (8, 24, 56, 110):
                assert n[f"{branch}_L{depth}_residual_min"] >= (1 - RHO) ** depth * (1 - 1e-9)
                assert n[f"{branch}_L{depth}_plain_max"] <= RHO**depth * (1 + 1e-9)
        # the article's example, met with equality by the extremal stack
        assert n["worst_L24_residual_min"] == pytest.approx(0.0798, abs=5e-5)
        # real nets at init: ResNet-56 within 10x, plain-56 at least 100x further off
        assert 0.1 <= n["resnet56_param_ratio_gmean"] <= 10
        assert n["plain56_param_ratio_gmean"] > 100 * n["resnet56_param_ratio_gmean"]
        # 3 branches x 4 depths of stacks and 2 networks, for each of the 2 seeds
        assert len(row.run_ids) == 2 * (3 * 4 + 2)
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # per direction / per block series
        lit = row.evidence["literature"]  # He et al. 2016 and Yang et al. 2019 agree; Balduzzi
        assert [c["agrees"] for c in lit] == [True, True, None]  # measured another quantity
        figs = select_claims("C02")[0].report_figures(
            Evidence.from_dict(row.evidence), tmp_path / "f"
        )
    assert [f.path for f in figs] == ["ratio_vs_depth.png", "per_block_gradients.png"]
    assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
