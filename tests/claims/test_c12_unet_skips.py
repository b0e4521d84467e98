from skiplab.claims import reproduce, select_claims
from skiplab.claims.c12_unet_skips import crop_checks
from skiplab.store import Store


def test_crop_and_concat_checks_pass():
    checks = crop_checks()
    assert all(v is not False for v in checks.values()), checks
    assert checks["nearest_valid_100"] == 188


def test_long_skips_beat_the_plain_twin_on_boundaries_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C12"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "inconclusive"), out.reason
        n = store.latest_verdict("C12", "tiny").evidence["numbers"]
        assert n["concat_boundary_f1"] > n["plain_boundary_f1"]
        assert n["concat_dice"] > n["plain_dice"]
