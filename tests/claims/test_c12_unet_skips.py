from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c12_unet_skips import METRICS, VARIANTS, Result, UNetSkips, crop_checks
from skiplab.models.unet import nearest_valid_size
from skiplab.store import Store


def test_crop_and_concat_checks_pass():
    checks = crop_checks()
    assert all(checks.values()), checks
    assert nearest_valid_size(100, 4, "valid") == 188


def _verdict(concat_bf1: list[float], plain_bf1: list[float], crop_ok: bool = True) -> str:
    scores = {v: {m: [0.5] * len(concat_bf1) for m in METRICS} for v in VARIANTS}
    scores["concat"]["boundary_f1"], scores["plain"]["boundary_f1"] = concat_bf1, plain_bf1
    r = Result(
        scores=scores, curves={}, curve_steps=[], crop_checks={"centre_aligned": crop_ok},
        nearest_valid_100=188, example_images=[], example_masks=[], examples={}, setup="",
        levels=2, seeds=list(range(len(concat_bf1))),
    )  # fmt: skip
    claim = UNetSkips()
    return Verdict.from_checks(claim.checks(r), claim.detail(r)).status


def test_criterion_holds_fails_and_is_inconclusive_as_stated():
    assert _verdict([0.90, 0.88], [0.70, 0.75]) == "holds"
    assert _verdict([0.90, 0.88], [0.70, 0.75], crop_ok=False) == "fails"
    assert _verdict([0.70, 0.72], [0.71, 0.73]) == "fails"  # not better on average
    assert _verdict([0.90, 0.70], [0.75, 0.72]) == "inconclusive"  # seeds overlap
    assert _verdict([0.80, 0.81], [0.77, 0.78]) == "inconclusive"  # gap below 0.05


def test_long_skips_beat_the_plain_twin_on_boundaries_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C12"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "inconclusive"), out.reason
        row = store.latest_verdict("C12", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        assert n["concat_boundary_f1"] > n["plain_boundary_f1"]
        assert n["concat_dice"] > n["plain_dice"]
        assert len(row.run_ids) == 4  # three trained variants and the crop-and-concat checks
        assert all(store.metrics(r) for r in row.run_ids)
        summary = Result.from_json(row.evidence["summary"])
        assert summary.nearest_valid_100 == 188 and all(summary.crop_checks.values())
        figs = UNetSkips().report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["unet_scores.png", "unet_examples.png"]
        assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
