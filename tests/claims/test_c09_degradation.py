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
        curves={m: [] for m in MODELS}, setup="", log_gap={},
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
    assert status == "fails" and "plain-56 trains worse than plain-20 on average" in text


def test_criterion_is_inconclusive_within_the_seed_spread():
    final = {
        "plain20": [0.1, 0.5], "plain56": [0.3, 0.6],
        "resnet20": [0.01, 0.012], "resnet56": [0.01, 0.011],
    }  # fmt: skip
    assert _decide_dataset(final)[0] == "inconclusive"


def test_criterion_is_inconclusive_after_a_divergence():
    final = {
        "plain20": [0.1, 0.1], "plain56": [math.nan, 1.0],
        "resnet20": [0.01, 0.01], "resnet56": [0.01, 0.01],
    }  # fmt: skip
    assert _decide_dataset(final)[0] == "inconclusive"


def test_plain56_trains_worse_than_plain20_at_tiny_scale(tmp_path):
    torch.manual_seed(0)
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C09"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "fails", "inconclusive"), out.reason
        row = store.latest_verdict("C09", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        # Tiny scale is too short for the residual half (ResNet-56 still lags ResNet-20 after a
        # few dozen steps; the quick scale decides the claim); the plain half shows already:
        assert n["mnist1d_plain56_train_loss"] > 1.5 * n["mnist1d_plain20_train_loss"]
        assert n["mnist_plain56_train_loss"] > n["mnist_plain20_train_loss"]
        # ... and so does the residual net's head start over the plain one of equal depth
        assert n["mnist1d_resnet56_train_loss"] < n["mnist1d_plain56_train_loss"]
        assert n["mnist1d_resnet56_test_acc"] > n["mnist1d_plain56_test_acc"]
        assert len(row.run_ids) == 8
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        claim = select_claims("C09")[0]
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["error_curves.png", "loss_curves.png"]
        assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
