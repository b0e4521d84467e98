import pytest

from skiplab.claims import reproduce, select_claims
from skiplab.claims._base import Evidence
from skiplab.claims.c18_lesion_ensemble import LesionEnsemble, retained
from skiplab.store import Store


def test_lesions_hurt_the_plain_twin_more_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C18"), scale="tiny", store=store, workdir=tmp_path)
        row = store.latest_verdict("C18", "tiny")
    assert out.status in ("holds", "inconclusive"), out.reason  # never reversed
    s = row.evidence["series"]["per_seed"]
    # deleting one block keeps far more of the ResNet's accuracy than of the plain twin's
    assert s["residual_median_retained"][0] > s["plain_median_retained"][0] + 0.2
    contrib = row.evidence["series"]["contrib"]
    assert contrib["n"] == 6 and contrib["paths"] == [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]


def test_decide_thresholds():
    claim = LesionEnsemble()
    assert retained(0.55, 1.0) == pytest.approx(0.5)
    ev = Evidence(series={"per_seed": {
        "residual_median_retained": [0.9, 0.8], "plain_median_retained": [0.1, 0.4],
        "residual_base_acc": [0.9, 0.9], "plain_base_acc": [0.8, 0.8],
    }})  # fmt: skip
    assert claim.decide(ev).status == "holds"
    ev.series["per_seed"]["plain_median_retained"] = [0.95, 0.9]
    assert claim.decide(ev).status == "fails"
    ev.series["per_seed"]["plain_median_retained"] = [0.6, 0.4]
    assert claim.decide(ev).status == "inconclusive"
