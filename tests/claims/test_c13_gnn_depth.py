from skiplab.claims import reproduce, select_claims
from skiplab.store import Store


def test_initial_residual_beats_plain_gcn_at_depth_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C13"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status != "error", out.reason
        ev = store.latest_verdict("C13", "tiny").evidence
        n = ev["numbers"]
        assert n["acc_initial_L8"] > n["acc_plain_L8"] + 0.1
        # the report table sets the measurement beside the published GCNII numbers
        titles = [t["title"] for t in ev["tables"]]
        assert any("published" in t for t in titles)
