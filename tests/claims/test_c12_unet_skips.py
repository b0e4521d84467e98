import math

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c12_unet_skips import (
    METRICS,
    VARIANTS,
    Result,
    UNetSkips,
    boundary_gap,
    crop_checks,
    trivial_dice,
)
from skiplab.models.unet import nearest_valid_size
from skiplab.store import Store


def test_crop_and_concat_checks_pass():
    checks = crop_checks()
    assert all(checks.values()), checks
    assert nearest_valid_size(100, 4, "valid") == 188


def _result(concat_bf1, plain_bf1, crop_ok=True, dice=0.9, fg=0.5) -> Result:
    n = len(concat_bf1)
    scores = {v: {m: [dice] * n for m in METRICS} for v in VARIANTS}
    scores["concat"]["boundary_f1"], scores["plain"]["boundary_f1"] = concat_bf1, plain_bf1
    return Result(
        scores=scores, fg_fraction=[fg] * n, curves={}, curve_steps=[],
        crop_checks={"centre_aligned": crop_ok}, nearest_valid_100=188, example_images=[],
        example_masks=[], examples={}, setup="", levels=2, seeds=list(range(n)),
    )  # fmt: skip


def _verdict(*args, **kwargs) -> Verdict:
    r, claim = _result(*args, **kwargs), UNetSkips()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_the_effect_is_a_paired_interval_and_the_control_a_constant_predictor():
    r = _result([0.90, 0.88, 0.92], [0.70, 0.75, 0.71], fg=0.6)
    gap = boundary_gap(r)
    assert gap is not None and gap.n == 3 and math.isclose(gap.mean, (0.2 + 0.13 + 0.21) / 3)
    assert gap.lo > 0.05
    assert math.isclose(trivial_dice(r), 2 * 0.6 / 1.6)  # all-foreground beats all-background


def test_criterion_holds_fails_and_is_inconclusive_as_stated():
    assert _verdict([0.90, 0.88, 0.92], [0.70, 0.75, 0.71]).status == "holds"
    assert _verdict([0.90, 0.88, 0.92], [0.70, 0.75, 0.71], crop_ok=False).status == "fails"
    v = _verdict([0.70, 0.72, 0.71], [0.71, 0.73, 0.70])  # not better on average
    assert v.status == "fails" and "above the plain twin's" in v.reason
    v = _verdict([0.90, 0.70, 0.95], [0.75, 0.72, 0.70])  # better, but the interval spans 0
    assert v.status == "inconclusive" and "excludes 0" in v.reason
    v = _verdict([0.80, 0.81, 0.82], [0.77, 0.78, 0.78])  # interval above 0, gap below 0.05
    assert v.status == "inconclusive" and "at least 0.05" in v.reason
    assert _verdict([0.9, math.nan, 0.9], [0.7, 0.7, 0.7]).status == "inconclusive"  # diverged


def test_u_nets_no_better_than_predicting_cell_everywhere_fail_the_control():
    # Dice 0.6 < all-foreground's 2 * 0.6 / 1.6 = 0.75: the budget did not teach segmentation
    v = _verdict([0.90, 0.88, 0.92], [0.70, 0.75, 0.71], dice=0.6, fg=0.6)
    assert v.status == "inconclusive" and "positive control failed" in v.reason


def test_long_skips_beat_the_plain_twin_on_boundaries_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        outs = reproduce(
            select_claims("C12"), scale="tiny", store=store, workdir=tmp_path, replicate=True
        )
        assert [o.seeds for o in outs] == [[0, 1, 2], [1000, 1001, 1002]]
        for out in outs:
            assert out.status == "holds", out.reason
        row = store.latest_verdict("C12", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        assert n["bf1_gap_lo"] > 0 and n["bf1_gap"] > 0.1  # long skips find the membranes
        assert n["concat_dice"] > n["plain_dice"]
        # the control: both U-Nets beat predicting "cell" everywhere
        assert min(n["concat_dice"], n["add_dice"]) > n["trivial_dice"] > 0.5
        assert len(row.run_ids) == 3 * 3 + 1  # three trained variants x seeds, the crop checks
        assert all(store.metrics(r) for r in row.run_ids)
        summary = Result.from_json(row.evidence["summary"])
        assert summary.nearest_valid_100 == 188 and all(summary.crop_checks.values())
        assert [c["agrees"] for c in row.evidence["literature"]] == [True, None]
        figs = UNetSkips().report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["unet_scores.png", "unet_examples.png"]
        assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
