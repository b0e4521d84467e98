import math

import torch

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c09_degradation import DatasetResult, _dataset_checks
from skiplab.store import Store

MODELS = ("plain20", "plain56", "resnet20", "resnet56")


def _decide_dataset(losses: dict[str, list[float]]) -> tuple[str, str]:
    n = len(losses["plain20"])
    d = DatasetResult(
        train_loss=losses, train_err={m: [0.1] * n for m in MODELS},
        test_acc={m: [0.9] * n for m in MODELS}, wall_s={m: [1.0] * n for m in MODELS},
        curves={m: [] for m in MODELS}, setup="",
    )  # fmt: skip
    verdict = Verdict.from_checks(_dataset_checks("mnist1d", d))
    return verdict.status, verdict.reason


def test_criterion_on_the_reference_measurement_holds():
    # a colleague's 2-seed MNIST-1D numbers: huge plain gap, small but non-zero residual gap
    final = {
        "plain20": [0.078, 0.082], "plain56": [1.18, 1.24],
        "resnet20": [0.0055, 0.0059], "resnet56": [0.0122, 0.0132],
    }  # fmt: skip
    status, text = _decide_dataset(final)
    assert status == "holds", text


def test_criterion_fails_when_the_residual_pair_degrades_as_much():
    final = {
        "plain20": [0.08, 0.09], "plain56": [1.2, 1.3],
        "resnet20": [0.01, 0.012], "resnet56": [0.9, 1.1],
    }  # fmt: skip
    assert _decide_dataset(final)[0] == "fails"


def test_criterion_fails_without_plain_degradation():
    final = {
        "plain20": [0.3, 0.35], "plain56": [0.2, 0.25],
        "resnet20": [0.01, 0.012], "resnet56": [0.01, 0.011],
    }  # fmt: skip
    status, text = _decide_dataset(final)
    assert status == "fails" and "plain-56 trains worse than plain-20 (mean log10 gap > 0)" in text


def test_criterion_is_inconclusive_within_the_seed_spread():
    final = {
        "plain20": [0.1, 0.5], "plain56": [0.3, 0.6],
        "resnet20": [0.01, 0.012], "resnet56": [0.01, 0.011],
    }  # fmt: skip
    assert _decide_dataset(final)[0] == "inconclusive"


def test_criterion_is_inconclusive_when_the_residual_gap_is_within_the_spread():
    # the plain gap is clear (about 1.2 decades, every seed) but the residual pair's gap varies
    # so much over seeds that g_plain - g_res has an interval reaching below 0
    final = {
        "plain20": [0.08, 0.08, 0.08], "plain56": [1.2, 1.3, 1.25],
        "resnet20": [0.01, 0.01, 0.01], "resnet56": [0.002, 0.02, 0.05],
    }  # fmt: skip
    status, text = _decide_dataset(final)
    assert status == "inconclusive" and "g_plain - g_res excludes 0" in text


def test_a_failed_positive_control_makes_it_inconclusive_whatever_the_gaps():
    # the 20-layer nets did not train (loss near ln 10 = 2.30): the budget cannot decide, even
    # though the numbers would otherwise read as a failed claim (no plain degradation)
    final = {
        "plain20": [2.2, 2.25], "plain56": [2.1, 2.2],
        "resnet20": [0.5, 0.6], "resnet56": [0.5, 0.6],
    }  # fmt: skip
    status, text = _decide_dataset(final)
    assert status == "inconclusive" and "positive control failed" in text
    assert "the 20-layer networks train" in text


def test_criterion_is_inconclusive_after_a_divergence():
    final = {
        "plain20": [0.1, 0.1], "plain56": [math.nan, 1.0],
        "resnet20": [0.01, 0.01], "resnet56": [0.01, 0.01],
    }  # fmt: skip
    assert _decide_dataset(final)[0] == "inconclusive"


def test_tiny_scale_is_too_short_and_the_verdict_says_the_budget_is_why(tmp_path):
    torch.manual_seed(0)
    with Store(tmp_path / "s.sqlite") as store:
        primary, replica = reproduce(
            select_claims("C09"), scale="tiny", store=store, workdir=tmp_path, seeds=2,
            replicate=True,
        )  # fmt: skip
        row = store.latest_verdict("C09", "tiny")
        rep = store.latest_verdict("C09", "tiny", seedset="replicate")
        assert row is not None and rep is not None and rep.seeds == [1000, 1001]
        assert len(row.run_ids) == 16  # 2 datasets x 4 networks x 2 seeds
        assert all(store.run(r).status == "completed" for r in row.run_ids + rep.run_ids)
    for out, ev in ((primary, row.evidence), (replica, rep.evidence)):
        # 48 (MNIST-1D) and 8 (MNIST) steps leave plain-20 near the chance loss: the positive
        # control fails on both datasets, and the verdict blames the budget, not the claim
        assert out.status == "inconclusive" and "positive control failed" in out.reason
        controls = [c for c in ev["checks"] if c["kind"] == "control"]
        assert len(controls) == 2 and not any(c["passed"] for c in controls)
        n = ev["numbers"]
        # ... yet the residual net's head start over the plain one of equal depth shows already
        assert n["mnist1d_resnet56_test_acc"] > n["mnist1d_plain56_test_acc"] + 0.1
        assert n["mnist1d_resnet56_train_loss"] < n["mnist1d_plain56_train_loss"]
        for name in ("plain_log_gap", "residual_log_gap", "gap_difference"):
            assert n[f"mnist1d_{name}_lo"] <= n[f"mnist1d_{name}"] <= n[f"mnist1d_{name}_hi"]
    claim = select_claims("C09")[0]
    figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
    assert [f.path for f in figs] == ["error_curves.png", "loss_curves.png"]
    assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
