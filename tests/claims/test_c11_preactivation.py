from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c11_preactivation import ArchResult, InitStats, Preactivation, Result
from skiplab.store import Store


def _result(pre: list[float], post: list[float], shallow: float = 0.5) -> Result:
    """Depth 20 (every loss ``shallow``: the control) and depth 110 (``pre`` vs ``post``)."""
    init = InitStats(var=[1.0, 2.0], sq_mean=[1.0, 2.0], branch_var=[1.0, 1.0], grad=[2.0, 1.0])

    def arch(loss: list[float]) -> ArchResult:
        return ArchResult(loss, [0.9] * len(loss), [0.9] * len(loss), init)

    base = [shallow] * len(pre)
    nets = {
        20: {"pre": arch(base), "post": arch(base)},
        110: {"pre": arch(pre), "post": arch(post)},
    }
    return Result([20, 110], 2, list(range(len(pre))), nets, [])


def _decide(pre: list[float], post: list[float], shallow: float = 0.5) -> Verdict:
    claim = Preactivation()
    r = _result(pre, post, shallow)
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_criterion_decides_on_the_interval_of_the_log_loss_ratio_at_the_deepest_depth():
    assert _decide([1.4, 1.5, 1.45], [2.0, 2.1, 2.05]).status == "holds"
    assert _decide([2.0, 2.1, 2.05], [1.4, 1.5, 1.45]).status == "fails"
    # post ahead on two seeds, behind on one: the interval contains 0
    mixed = _decide([1.4, 1.5, 2.1], [2.0, 1.4, 1.45])
    assert mixed.status == "inconclusive" and "is above 0" in mixed.reason
    one = _decide([0.1], [0.9])
    assert one.status == "inconclusive" and "one seed" in one.reason


def test_an_untrained_shallow_net_makes_the_budget_the_reason():
    # the depth-20 nets stay near the chance loss ln 10 = 2.30: whatever depth 110 shows, the
    # budget cannot decide
    verdict = _decide([1.4, 1.5, 1.45], [2.0, 2.1, 2.05], shallow=2.2)
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason


def test_preactivation_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        primary, replica = reproduce(
            select_claims("C11"), scale="tiny", store=store, workdir=tmp_path, replicate=True
        )
        row = store.latest_verdict("C11", "tiny")
        rep = store.latest_verdict("C11", "tiny", seedset="replicate")
        assert row is not None and rep is not None and rep.seeds == [1000, 1001, 1002]
        assert all(store.run(r).status == "completed" for r in row.run_ids + rep.run_ids)
        assert len(row.run_ids) == 12  # 2 depths x 2 block types x 3 seeds
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
    for out, ev in ((primary, row.evidence), (replica, rep.evidence)):
        checks = {c["kind"]: c for c in ev["checks"]}
        assert checks["control"]["passed"], checks["control"]  # the depth-8 nets trained
        n = ev["numbers"]
        # At 32 layers and 64 steps pre-activation's advantage does not appear (He et al.
        # 2016 see the gap open at 110 layers and more; quick scale compares 110): the interval
        # of log10(L_post / L_pre) over 3 seeds is not above 0. Whether it contains 0 or lies
        # below it depends on the seeds and on the machine's float kernels (on one machine
        # seeds 0..2 gave [-0.43, 0.23] and seeds 1000..1002 [-0.112, -0.055]; on another both
        # contained 0), so the verdict must be the one its interval implies: inconclusive or
        # fails, never for want of seeds or of a trained control.
        assert n["gap32_lo"] < 0
        expected = "fails" if n["gap32_hi"] < 0 else "inconclusive"
        assert out.status == expected and "is above 0" in out.reason
        assert "one seed" not in out.reason and "positive control" not in out.reason
    n = row.evidence["numbers"]
    # the clean identity path at init: the gradient reaching the first block, relative to the
    # last, is larger with pre-activation, and the residual stream's variance grows further
    assert n["pre32_grad_first_over_last"] > 1.5 * n["post32_grad_first_over_last"]
    assert n["pre32_final_var"] > n["post32_final_var"]
    assert {f"{a}{d}_train_loss" for a in ("pre", "post") for d in (8, 32)} <= set(n)
    assert len(row.evidence["literature"]) == 3
    claim = select_claims("C11")[0]
    figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
    assert [f.path for f in figs] == ["preactivation.png"]
    assert (tmp_path / "f" / "preactivation.png").stat().st_size > 10_000
