"""C14 at tiny scale: skiplab's GRU is torch's GRU, and z -> 0 is an identity highway."""

from skiplab.claims._base import Evidence, reproduce, select_claims
from skiplab.claims.c14_gru_residual import GATES
from skiplab.store import Store


def test_c14_tiny_holds(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    (claim,) = select_claims("C14")
    (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
    assert outcome.status == "holds", outcome.reason
    ev = Evidence.from_dict(store.latest_verdict("C14", "tiny").evidence)
    assert max(max(v) for v in ev.series["per_seed"].values()) < 1e-6
    long = max(ev.series["lengths"])
    norms = [ev.numbers[f"jac_T{long}_z{z}"] for z in GATES]
    assert norms[0] > 0.5 and norms[-1] < 1e-6  # highway at z -> 0, forgetting at z -> 1
    assert ev.numbers[f"jac_T{long}_plain_z0.5"] < 1e-3 * ev.numbers[f"jac_T{long}_z0.5"]
    assert claim.figures(ev, tmp_path)
