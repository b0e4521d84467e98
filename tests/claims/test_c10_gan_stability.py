from dataclasses import replace

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c10_gan_stability import SCALES, GANStability, Result, Training
from skiplab.diagnostics.gain import GainSummary
from skiplab.store import Store


def _trained(modes: list[float], in_bounds: float) -> Training:
    n = len(modes)
    probes = [{"step": [0.0, 60.0], "gain": [1.0, 1.0], "c": [0.3, 0.3],
               "input_grad": [0.1, 0.2], "in_bounds": [in_bounds, 1.0]}] * n  # fmt: skip
    evals = [{"step": [0.0, 60.0], "modes": [0.0, m], "hq_frac": [0.0, 0.5]} for m in modes]
    return Training(modes, modes, [0.5] * n, [0.0] * n, [0.0] * n, probes, evals, [[0.0, 0.0]])


def _result(res_gain=1.0, plain_gains=(0.04, 1e-7), in_bounds=1.0,
            modes=((7.0, 6.0, 8.0), (3.0, 2.5, 4.0))) -> Result:  # fmt: skip
    """Three seeds; ``modes``: residual and plain modes covered on the ring, per seed."""

    def stack(gain):
        return GainSummary(gain=gain, c=0.3, c_mean=0.2, prod_c=0.01, in_bounds=1.0, input_grad=1)

    res, plain = (list(m) for m in modes)
    return Result(
        init={"residual": [stack(res_gain)] * 2, "plain": [stack(g) for g in plain_gains]},
        log_ratio=[7.0, 7.1, 6.9],
        train={"ring8": {"residual": _trained(res, in_bounds), "plain": _trained(plain, 1.0)}},
        centers={"ring8": [[2.0, 0.0]] * 8}, in_bounds_init=1.0, in_bounds_train=in_bounds,
        modes={"ring8": {"residual": sum(res) / 3, "plain": sum(plain) / 3}},
        seeds=[0, 1, 2], scale="quick", settings=SCALES["quick"],
    )  # fmt: skip


def _decide(r: Result) -> Verdict:
    claim = GANStability()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_criterion_holds_when_the_paired_mode_difference_lies_above_zero():
    r = _result()
    e = r.effect("ring8")
    assert abs(e.mean - 23 / 6) < 1e-9 and e.lo > 0  # paired over seeds: 4, 3.5, 4 more modes
    assert _decide(r).status == "holds"


def test_criterion_fails_on_a_broken_gradient_statement_or_significantly_fewer_modes():
    assert _decide(_result(in_bounds=0.98)).status == "fails"  # the bound is broken in training
    assert _decide(_result(plain_gains=(0.04, 0.2))).status == "fails"  # no 10x gap at L max
    assert _decide(_result(plain_gains=(1e-8, 1e-7))).status == "fails"  # plain gain grows with L
    fewer = _result(modes=((6.0, 5.0, 6.0), (8.0, 7.5, 8.0)))  # the plain D clearly better
    assert fewer.effect("ring8").hi < 0 and _decide(fewer).status == "fails"


def test_criterion_is_inconclusive_when_training_does_not_separate_the_arms():
    r = _result(modes=((7.0, 5.0, 8.0), (6.0, 6.5, 7.0)))
    assert r.effect("ring8").lo < 0 < r.effect("ring8").hi
    verdict = _decide(r)
    assert verdict.status == "inconclusive" and "more modes" in verdict.reason


def test_a_failed_control_makes_it_inconclusive_whatever_else():
    # the residual GAN covers 3 of 8 modes: too short to train, even with a broken bound
    r = replace(_result(modes=((3.0, 3.0, 3.0), (0.0, 0.0, 0.0))), in_bounds_init=0.5)
    verdict = _decide(r)
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason


def test_claim_runs_at_tiny_scale_with_bounded_residual_gradients(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        outs = reproduce(
            select_claims("C10"), scale="tiny", store=store, workdir=tmp_path, replicate=True
        )
        rows = [store.latest_verdict("C10", "tiny", seedset=s) for s in ("primary", "replicate")]
        assert all(store.run(r).status == "completed" for row in rows for r in row.run_ids)
        assert all(store.metrics(r) for r in rows[0].run_ids)  # every run logged its metrics
    assert [row.seeds for row in rows] == [[0, 1], [1000, 1001]]
    for out, row in zip(outs, rows):
        # 60 GAN steps teach the generator nothing: the control fails and says so
        assert out.status == "inconclusive" and "positive control failed" in out.reason
        ev = row.evidence
        assert ev["summary"]["in_bounds_init"] == 1.0  # every residual sample, every depth
        num = ev["numbers"]
        # the plain stack's gain at L = 8 is orders of magnitude below the residual one's
        assert num["init_plain_gain_Lmax"] < 1e-2 * num["init_residual_gain_Lmax"]
        assert 0.5 < num["init_residual_gain_Lmax"] < 10
        assert num["ring8_residual_modes"] < 4 and num["ring8_residual_init_modes"] < 2
        assert len(row.run_ids) == 8  # 2 seeds x (init + ring8) x 2 arms
        assert len(ev["literature"]) == 4
    figs = GANStability().report_figures(Evidence.from_dict(rows[0].evidence), tmp_path / "f")
    assert [f.path for f in figs] == ["gan_gradients.png", "gan_samples.png"]
    assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
