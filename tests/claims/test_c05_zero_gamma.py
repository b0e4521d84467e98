import math

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c05_zero_gamma import (
    NetResult,
    Result,
    RunResult,
    ZeroGammaClaim,
    budget_losses,
)
from skiplab.store import Store


def test_budget_losses_average_the_steps_before_each_budget():
    losses = [float(i) for i in range(1, 31)]
    assert budget_losses(losses, [10, 30]) == [5.5, 25.5]
    assert budget_losses(losses[:5], [10]) == [math.inf]


def _net(final: dict[str, list[float]], diverged: dict[str, int] | None = None) -> NetResult:
    """One network at one lr: final losses per init, and how many runs of each diverged."""
    runs = []
    for init, losses in final.items():
        for seed, loss in enumerate(losses):
            div = seed < (diverged or {}).get(init, 0)
            runs.append(RunResult(0.1, init, seed, 5 if div else None, 0.5, [loss], [loss], 1))
    return NetResult("ResMLP-100", [0.1], [10], 1, 512, (50, 50), 0, runs)


def _status(nets: list[NetResult]) -> str:
    return ZeroGammaClaim().decide(Result(nets, [0, 1], True)).status


def test_criterion():
    assert _status([_net({"standard": [2.0, 2.1], "zero-gamma": [1.0, 1.1]})]) == "holds"
    assert _status([_net({"standard": [1.0, 1.1], "zero-gamma": [2.0, 2.1]})]) == "inconclusive"
    # fewer divergences decide it even where no setting is comparable
    fewer = _net({"standard": [9.0, 9.0], "zero-gamma": [1.0, 1.0]}, {"standard": 1})
    assert _status([fewer]) == "holds"
    more = _net({"standard": [1.0, 1.0], "zero-gamma": [1.0, 1.0]}, {"zero-gamma": 1})
    assert _status([more]) == "fails"
    broken = _net({"standard": [2.0, 2.1], "zero-gamma": [1.0, 1.1]})
    broken.identity = (49, 50)
    assert _status([broken]) == "fails"


def test_claim_runs_at_tiny_scale_and_zero_gamma_rescues_the_deep_mlp(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C05"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "inconclusive"), out.reason
        row = store.latest_verdict("C05", "tiny")
        assert row is not None
        assert len(row.run_ids) == 8
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
    num = row.evidence["numbers"]
    assert num["ResMLP-100_identity_blocks"] == num["ResMLP-100_blocks"] == 50
    assert num["ResNet-20_identity_blocks"] == num["ResNet-20_blocks"] == 9
    # standard init: the 100-layer MLP's residual stream grows with depth and its loss starts
    # in the hundreds; zero-gamma starts at the stem's loss and trains at once
    assert (
        num["ResMLP-100_zero-gamma_lr0.1_final_loss"]
        < 0.1 * num["ResMLP-100_standard_lr0.1_final_loss"]
    )
    claim = select_claims("C05")[0]
    figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
    assert [f.path for f in figs] == ["zero_gamma.png"]
    assert (tmp_path / "f" / "zero_gamma.png").stat().st_size > 10_000
