from skiplab.claims import reproduce, select_claims
from skiplab.store import Store


def test_claim_runs_at_tiny_scale_with_bounded_residual_gradients(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C10"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "inconclusive"), out.reason  # 60 GAN steps teach little
        ev = store.latest_verdict("C10", "tiny").evidence
        init = ev["series"]["init"]
        assert all(e["in_bounds"] == 1.0 for d in init["residual"].values() for e in d)
        # the plain stack's gain at L = 8 is orders of magnitude below the residual one's
        assert (
            ev["numbers"]["init_plain_gain_Lmax"] < 1e-2 * ev["numbers"]["init_residual_gain_Lmax"]
        )
        assert 0.5 < ev["numbers"]["init_residual_gain_Lmax"] < 10
        assert (tmp_path / "s.sqlite").exists()
