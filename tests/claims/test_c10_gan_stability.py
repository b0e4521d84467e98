from dataclasses import replace

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c10_gan_stability import SCALES, GANStability, Result, Training
from skiplab.diagnostics.gain import GainSummary
from skiplab.store import Store


def _result(res_gain=1.0, plain_gains=(0.04, 1e-7), in_bounds=1.0, modes=(3.0, 2.0)) -> Result:
    def stack(gain):
        return GainSummary(gain=gain, c=0.3, c_mean=0.2, prod_c=0.01, in_bounds=1.0, input_grad=1)

    def trained(m):
        probes = [{"step": [0.0, 60.0], "gain": [1.0, 1.0], "c": [0.3, 0.3],
                   "input_grad": [0.1, 0.2], "in_bounds": [in_bounds, 1.0]}]  # fmt: skip
        return Training([m], [0.5], probes, [[0.0, 0.0]])

    return Result(
        init={"residual": [stack(res_gain)] * 2, "plain": [stack(g) for g in plain_gains]},
        train={mix: {"residual": trained(modes[0]), "plain": trained(modes[1])}
               for mix in ("ring8", "grid25")},
        centers={"ring8": [[2.0, 0.0]], "grid25": [[0.0, 0.0]]}, in_bounds_init=1.0,
        in_bounds_train=in_bounds, modes={mix: {"residual": modes[0], "plain": modes[1]}
                                          for mix in ("ring8", "grid25")},
        seeds=[0], scale="tiny", settings=SCALES["tiny"],
    )  # fmt: skip


def _decide(r: Result) -> Verdict:
    claim = GANStability()
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_criterion():
    assert _decide(_result()).status == "holds"
    assert _decide(_result(in_bounds=0.98)).status == "fails"  # the bound is broken in training
    assert _decide(_result(plain_gains=(0.04, 0.2))).status == "fails"  # no 10x gap at L max
    assert _decide(_result(plain_gains=(1e-8, 1e-7))).status == "fails"  # plain gain grows with L
    assert _decide(_result(modes=(1.0, 2.0))).status == "inconclusive"  # training does not show it
    assert _decide(_result(modes=(0.0, 0.0))).status == "inconclusive"  # 0 vs 0 is no test
    r = replace(_result(modes=(1.0, 2.0)), in_bounds_init=0.5)
    assert _decide(r).status == "fails"  # a failed gradient statement outweighs coverage


def test_claim_runs_at_tiny_scale_with_bounded_residual_gradients(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C10"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "inconclusive"), out.reason  # 60 GAN steps teach little
        row = store.latest_verdict("C10", "tiny")
        assert row is not None
        ev = row.evidence
        assert ev["summary"]["in_bounds_init"] == 1.0  # every residual sample, every depth
        # the plain stack's gain at L = 8 is orders of magnitude below the residual one's
        assert (
            ev["numbers"]["init_plain_gain_Lmax"] < 1e-2 * ev["numbers"]["init_residual_gain_Lmax"]
        )
        assert 0.5 < ev["numbers"]["init_residual_gain_Lmax"] < 10
        assert len(row.run_ids) == 6
        assert all(store.run(r).status == "completed" for r in row.run_ids)
        assert all(store.metrics(r) for r in row.run_ids)  # every run logged per-step metrics
        figs = GANStability().report_figures(Evidence.from_dict(ev), tmp_path / "f")
        assert [f.path for f in figs] == ["gan_gradients.png", "gan_samples.png"]
        assert all((tmp_path / "f" / f.path).stat().st_size > 10_000 for f in figs)
    assert (tmp_path / "s.sqlite").exists()
