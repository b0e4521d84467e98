"""C14 at tiny scale: skiplab's GRU is torch's GRU, and z -> 0 is an identity highway."""

from skiplab.claims import Evidence, reproduce, select_claims
from skiplab.claims.c14_gru_residual import GATES, Result
from skiplab.store import Store


def test_mnist1d_runs_on_the_first_seeds_of_either_seed_set():
    (claim,) = select_claims("C14")
    for scale, seeds, mnist in (("quick", [0, 1, 2], [0]), ("quick", [1000, 1001], [1000]),
                                ("full", [0, 1, 2], [0, 1, 2])):  # fmt: skip
        plan = claim.plan(claim.settings(scale), seeds)
        assert sorted({s for c, s in plan if c.experiment == "mnist1d"}) == mnist
        assert sorted({s for c, s in plan if c.experiment == "gate"}) == seeds


def test_c14_tiny_holds(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C14")
        (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
        assert outcome.status == "holds", outcome.reason
        row = store.latest_verdict("C14", "tiny")
        assert row is not None
        r = Result.from_json(row.evidence["summary"])
        assert max(max(v) for v in r.diffs.values()) < 1e-6
        n = row.evidence["numbers"]
        long = max(r.lengths)
        norms = [n[f"jac_T{long}_z{z}"] for z in GATES]
        assert norms[0] > 0.5 and norms[-1] < 1e-6  # highway at z -> 0, forgetting at z -> 1
        assert n[f"jac_T{long}_plain_z0.5"] < 1e-3 * n[f"jac_T{long}_z0.5"]
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["gru_residual.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
