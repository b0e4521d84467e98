from skiplab.claims import reproduce, select_claims
from skiplab.claims.c13_gnn_depth import BASELINE, SCALES, GNNDepth, best_validation
from skiplab.store import Store
from skiplab.train import History


def test_the_baseline_runs_its_own_seeds_derived_from_the_given_ones():
    claim, s = GNNDepth(), SCALES["quick"]
    for seeds in ([0, 1], [1000, 1001]):
        plan = claim.plan(s, seeds)
        base = [seed for c, seed in plan if c.study == BASELINE]
        assert base == list(range(seeds[0], seeds[0] + 10))
        assert {seed for c, seed in plan if c.study != BASELINE} == set(seeds)
        assert len(plan) == 5 * len(s.depths) * len(seeds) + 10


def test_test_accuracy_is_read_at_the_first_best_validation_epoch():
    history = History([
        {"train_loss": 1.0},  # an epoch without evaluation
        {"val_acc": 0.6, "test_acc": 0.5},
        {"val_acc": 0.7, "test_acc": 0.6},
        {"val_acc": 0.7, "test_acc": 0.9},  # ties do not move the best epoch
        {"val_acc": 0.65, "test_acc": 0.95},
    ])  # fmt: skip
    assert best_validation(history) == {"val": 0.7, "test": 0.6, "best_epoch": 3}


def test_initial_residual_beats_plain_gcn_at_depth_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C13"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status != "error", out.reason
        row = store.latest_verdict("C13", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        assert n["acc_initial_L8"] > n["acc_plain_L8"] + 0.1
        # the report table sets the measurement beside the published GCNII numbers
        titles = [t["title"] for t in row.evidence["tables"]]
        assert any("published" in t for t in titles)
        assert len(row.run_ids) == 5 * 2 + 2  # the depth sweep at one seed, the 2-seed baseline
        assert all(store.metrics(r) for r in row.run_ids)
