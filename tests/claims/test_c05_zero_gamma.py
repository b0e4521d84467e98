import math

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c05_zero_gamma import (
    CHANCE,
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


def _runs(lr: float, init: str, finals: list[float], diverged: int = 0) -> list[RunResult]:
    """Runs of one (lr, init), seed i ending at finals[i]; the first ``diverged`` diverged."""
    return [
        RunResult(lr, init, seed, 5 if seed < diverged else None, 0.5, [loss], [loss], 1)
        for seed, loss in enumerate(finals)
    ]


def _result(
    std_small: list[float],
    zg_small: list[float],
    std_failed_large: int,
    zg_failed_large: int,
    control: float = 1.0,
    identity: tuple[int, int] = (50, 50),
) -> Result:
    """Five seeds at lr 0.1 (final losses given) and lr 1.6 (so many runs end at 1e6)."""
    n = len(std_small)
    large = {i: [1e6] * k + [1.0] * (n - k) for i, k in
             (("standard", std_failed_large), ("zero-gamma", zg_failed_large))}  # fmt: skip
    runs = [
        *_runs(0.1, "standard", std_small), *_runs(0.1, "zero-gamma", zg_small),
        *_runs(1.6, "standard", large["standard"]), *_runs(1.6, "zero-gamma", large["zero-gamma"]),
    ]  # fmt: skip
    mlp = NetResult("ResMLP-100", [0.1, 1.6], [16], 1, 512, identity, 0, runs)
    resnet = NetResult("ResNet-110", [], [20], 1, 512, (54, 54), 0, [])
    ctl = NetResult("ResMLP-4", [0.1], [16], 1, 512, (2, 2), 0,
                    _runs(0.1, "standard", [control] * n))  # fmt: skip
    return Result([mlp, resnet], ctl, list(range(n)), True)


def _status(r: Result) -> str:
    return ZeroGammaClaim().decide(r).status


FAST, SLOW = [1.5, 1.52, 1.49, 1.51, 1.5], [2.0, 2.1, 1.9, 2.05, 1.95]


def test_criterion_holds_when_both_intervals_lie_above_zero():
    r = _result(SLOW, FAST, std_failed_large=5, zg_failed_large=0)
    assert _status(r) == "holds"
    fail, speed = r.failures(), r.speedup()
    assert fail.mean == 0.5 and fail.lo > 0  # 5/10 vs 0/10 failed runs
    assert math.isclose(speed.mean, 0.496) and speed.lo > 0.41 and speed.hi < 0.59  # 5 pairs


def test_criterion_is_inconclusive_when_the_failure_rates_are_indistinguishable():
    # a clear, paired speed-up but 2 vs 1 failed runs of 10: the rate interval includes 0
    r = _result(SLOW, FAST, std_failed_large=2, zg_failed_large=1)
    assert r.failures().lo < 0 < r.failures().hi
    verdict = ZeroGammaClaim().decide(r)
    assert verdict.status == "inconclusive" and "fails in fewer runs" in verdict.reason


def test_criterion_fails_when_zero_gamma_is_significantly_worse_or_not_an_identity():
    assert _status(_result(FAST, SLOW, std_failed_large=5, zg_failed_large=0)) == "fails"
    assert _status(_result(SLOW, FAST, std_failed_large=0, zg_failed_large=5)) == "fails"
    broken = _result(SLOW, FAST, 5, 0, identity=(49, 50))
    assert _status(broken) == "fails"


def test_a_failed_control_makes_it_inconclusive_whatever_else():
    # the shallow net ends above chance: the budget trains nothing, even a broken identity
    r = _result(FAST, SLOW, 0, 5, control=CHANCE + 0.1, identity=(49, 50))
    verdict = ZeroGammaClaim().decide(r)
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason


def test_runs_stuck_near_chance_fail_but_do_not_count_as_blown_up():
    r = _result([2.5, 2.6, 1.9, 2.0, 2.1], FAST, std_failed_large=1, zg_failed_large=1)
    assert math.isclose(r.failures().mean, 0.2)  # 3/10 vs 1/10: two end above ln 10
    assert r.failures(blew_up=True).mean == 0  # 1/10 vs 1/10 ended at 1e6
    note = ZeroGammaClaim().notes(r)[-1]
    assert "stuck near chance (final loss ln 10 to 10 ln 10): standard 2, zero-gamma 0" in note


def test_a_diverged_pair_is_left_out_of_the_paired_loss_difference():
    r = _result(SLOW, FAST, 5, 0)
    r.nets[0].runs[0].diverged_at = 3  # standard, lr 0.1, seed 0
    assert r.speedup().n == 4
    assert r.runs("standard")[0].failed


def _reproduce(tmp_path, replicate: bool = False):
    with Store(tmp_path / "s.sqlite") as store:
        outs = reproduce(
            select_claims("C05"), scale="tiny", store=store, workdir=tmp_path, replicate=replicate
        )
        rows = [store.latest_verdict("C05", "tiny", seedset=o.seedset) for o in outs]
    return outs, rows


def test_claim_runs_at_tiny_scale_and_zero_gamma_rescues_the_deep_mlp(tmp_path):
    (out, rep), (row, rep_row) = _reproduce(tmp_path, replicate=True)
    assert row is not None and row.seeds == [0, 1]
    # 2 seeds x (2 lrs x 2 inits of the MLP + 2 ResNet identity checks + 1 control)
    assert len(row.run_ids) == 14
    ev = row.evidence
    num = ev["numbers"]
    assert num["ResMLP-100_identity_blocks"] == num["ResMLP-100_blocks"] == 50
    assert num["ResNet-20_identity_blocks"] == num["ResNet-20_blocks"] == 9
    # the control trains: the 4-layer net ends well below chance within 16 steps
    assert num["control_final_loss_max"] < CHANCE - 0.3
    assert next(c for c in ev["checks"] if c["kind"] == "control")["passed"]
    # standard init: the 100-layer MLP's residual stream grows with depth and its loss starts
    # far above chance; zero-gamma starts at the stem's loss and trains at once
    assert (
        num["ResMLP-100_zero-gamma_lr0.1_final_loss"]
        < num["ResMLP-100_standard_lr0.1_final_loss"] - 0.3
    )
    # ... on every seed (2 seeds give a paired interval too wide to exclude 0 at tiny scale)
    final = {(x["init"], x["seed"]): x["budget_loss"][-1]
             for x in ev["summary"]["nets"][0]["runs"] if x["lr"] == 0.1}  # fmt: skip
    assert all(final["standard", s] - final["zero-gamma", s] > 0.3 for s in (0, 1))
    assert [c["source"][:8] for c in ev["literature"]] == ["He et al", "Goyal et"]
    claim = select_claims("C05")[0]
    figs = claim.report_figures(Evidence.from_dict(ev), tmp_path / "f")
    assert [f.path for f in figs] == ["zero_gamma.png"]
    assert (tmp_path / "f" / "zero_gamma.png").stat().st_size > 10_000
    assert out.status in ("holds", "inconclusive"), out.reason
    # the replicate seed set 1000.. shows the same effect, and a rerun reuses every run
    assert rep.seedset == "replicate" and rep_row is not None and rep_row.seeds == [1000, 1001]
    assert rep_row.evidence["numbers"]["final_loss_diff"] > 0.3
    again, _ = _reproduce(tmp_path, replicate=True)
    assert all(o.executed == 0 for o in again)
