import dataclasses
from pathlib import Path

import numpy as np
import pytest

from skiplab.claims import Verdict, reproduce, select_claims
from skiplab.claims._runner import run_key
from skiplab.claims.c13_gnn_depth import (
    SCALES,
    VARIANTS,
    GNNDepth,
    Result,
    best_validation,
)
from skiplab.data import CORA_PATH, DataError
from skiplab.data.graph_file import load_graph
from skiplab.store import Store


def write_sbm(path: Path, *, seed: int = 0, per_class: int = 40, classes: int = 4, **edit) -> Path:
    """A stochastic block model in the shipped Cora's .npz format: dense blocks (p 0.15 within
    a class, 0.01 across) and bag-of-words features that favour each class's own words."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(classes), per_class))
    n, f = len(y), 8 * classes
    upper = np.triu(rng.random((n, n)) < np.where(y[:, None] == y[None, :], 0.15, 0.01), 1)
    src, dst = np.nonzero(upper)
    own = (np.arange(f) % classes)[None, :] == y[:, None]
    rows, cols = np.nonzero(rng.random((n, f)) < np.where(own, 0.3, 0.05))
    train = np.zeros(n, bool)
    for c in range(classes):
        train[np.flatnonzero(y == c)[:5]] = True  # 5 labels per class, as Planetoid's 20
    rest = np.flatnonzero(~train)
    val, test = np.zeros(n, bool), np.zeros(n, bool)
    val[rest[:40]], test[rest[40:]] = True, True
    arrays = {
        "x_indptr": np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]),
        "x_indices": cols, "x_data": np.ones(len(cols), np.float32), "x_shape": np.array([n, f]),
        "y": y, "edge_index": np.stack([np.r_[src, dst], np.r_[dst, src]]),
        "train_mask": train, "val_mask": val, "test_mask": test,
    }  # fmt: skip
    np.savez(path, **{k: edit[k](a) if callable(edit.get(k)) else edit.get(k, a)
                      for k, a in arrays.items()})  # fmt: skip
    return path


def result(acc: dict[str, tuple[list[float], list[float]]], dataset="Cora", chance=0.32) -> Result:
    n = len(acc["plain"][0])
    return Result(
        dataset=dataset, depths=[2, 16], acc={v: {2: a, 16: b} for v, (a, b) in acc.items()},
        epochs={v: {2: [100.0] * n, 16: [150.0] * n} for v in VARIANTS},
        fit={v: {2: [1.0] * n, 16: [0.3 if v == "plain" else 1.0] * n} for v in VARIANTS},
        energy={v: [[1.0, 0.1]] * n for v in VARIANTS}, rq={v: [[0.5, 0.1]] * n for v in VARIANTS},
        chance=chance, hidden=32, max_epochs=200, min_epochs=100, patience=50,
        seeds=list(range(n)),
    )  # fmt: skip


# a measurement of the shape the literature reports: plain collapses, GCNII keeps, res helps
REFERENCE = {
    "plain": ([0.81, 0.80, 0.815], [0.20, 0.25, 0.30]),
    "res": ([0.79, 0.80, 0.78], [0.70, 0.72, 0.71]),
    "res+": ([0.78, 0.79, 0.80], [0.66, 0.69, 0.70]),
    "initial": ([0.80, 0.81, 0.80], [0.82, 0.81, 0.83]),
    "jk": ([0.78, 0.79, 0.79], [0.60, 0.64, 0.66]),
}


def decide(acc=REFERENCE, **kw) -> Verdict:
    claim = GNNDepth()
    return claim.decide(result({**REFERENCE, **acc}, **kw))


def test_criterion_holds_on_the_published_pattern():
    verdict = decide()
    assert verdict.status == "holds", verdict.reason
    assert "Cora: GCN-2 80.8%" in verdict.reason


def test_criterion_fails_when_the_plain_gcn_does_not_collapse():
    verdict = decide({"plain": ([0.81, 0.80, 0.815], [0.78, 0.77, 0.79])})
    assert verdict.status == "fails" and "plain GCN collapses" in verdict.reason


def test_criterion_fails_when_the_initial_residual_loses_its_accuracy():
    verdict = decide({"initial": ([0.80, 0.81, 0.80], [0.60, 0.62, 0.61])})
    assert verdict.status == "fails" and "initial residual keeps" in verdict.reason


def test_criterion_is_inconclusive_when_only_the_interval_misses():
    # the mean change is about 0, but over three seeds its 95% interval reaches below -5 points
    verdict = decide({"initial": ([0.80, 0.81, 0.80], [0.70, 0.85, 0.86])})
    assert verdict.status == "inconclusive", verdict.reason
    assert "interval of the initial residual's 2 -> 16 change lies above -5" in verdict.reason


def test_criterion_is_inconclusive_when_neither_residual_beats_the_deep_plain_gcn():
    deep = ([0.78, 0.79, 0.80], [0.22, 0.26, 0.28])
    verdict = decide({"res": deep, "res+": deep})
    assert verdict.status == "inconclusive" and "res or res+" in verdict.reason


def test_a_failed_positive_control_makes_it_inconclusive_whatever_the_depth_effects():
    # the 2-layer GCN is 10 points short of Kipf & Welling's 81.5%, and the deep initial
    # residual would read as a failed claim: the budget is the reason, not the claim
    verdict = decide({
        "plain": ([0.71, 0.70, 0.72], [0.70, 0.71, 0.69]),
        "initial": ([0.80, 0.81, 0.80], [0.60, 0.62, 0.61]),
    })  # fmt: skip
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason
    assert "Kipf & Welling's 81.5% on Cora within 3 points" in verdict.reason


def test_under_trained_shallow_skip_nets_fail_the_control():
    verdict = decide({"jk": ([0.70, 0.72, 0.71], [0.60, 0.64, 0.66])})
    assert verdict.status == "inconclusive" and "positive control failed" in verdict.reason
    assert "every skip variant's 2-layer net" in verdict.reason


def test_the_reference_is_the_datasets_own_and_an_unknown_graph_is_judged_on_its_baseline():
    # CiteSeer's published GCN is 70.3%: a 70% GCN-2 passes there and would fail on Cora
    shallow = {v: ([0.70, 0.71, 0.69], deep) for v, (_, deep) in REFERENCE.items()}
    shallow["initial"] = ([0.70, 0.71, 0.69], [0.72, 0.71, 0.70])
    assert decide(shallow, dataset="CiteSeer").status == "holds"
    assert "positive control failed" in decide(shallow).reason
    unknown = decide(shallow, dataset="mygraph", chance=0.25)
    assert unknown.status == "holds", unknown.reason
    lit = GNNDepth().literature(result({**REFERENCE, **shallow}, dataset="mygraph"))
    assert lit[0].agrees is None and "no number for this graph" in lit[0].published
    # ... and a baseline barely above its majority class cannot decide
    weak = decide(shallow, dataset="mygraph", chance=0.62)
    assert weak.status == "inconclusive" and "above the majority class" in weak.reason


def test_test_accuracy_is_read_at_the_first_best_validation_epoch():
    val = [(5, 0.6), (10, 0.7), (15, 0.7), (20, 0.65)]  # ties do not move the best epoch
    test = [(5, 0.5), (10, 0.6), (15, 0.9), (20, 0.95)]
    assert best_validation(val, test) == {"val": 0.7, "test": 0.6, "best_epoch": 10}


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ({"train_mask": np.zeros(160, bool)}, "'train_mask' selects no node"),
        ({"y": np.repeat([0, 2, 3, 5], 40)}, "labels 0..C-1"),
        ({"y": np.repeat([-1, 0, 1, 2], 40)}, "labels 0..C-1"),
        ({"val_mask": np.ones(160, bool)}, "overlap"),
        ({"x_data": lambda a: np.where(np.arange(len(a)) == 0, np.nan, a)}, "non-finite"),
    ],
)
def test_a_bad_graph_file_gives_one_clear_error(tmp_path, edit, needle):
    path = write_sbm(tmp_path / "g.npz", **edit)
    with pytest.raises(DataError, match=needle) as err:
        GNNDepth().with_data(SCALES["tiny"], path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_with_data_names_the_graph_and_another_file_is_another_experiment(tmp_path):
    claim, s = GNNDepth(), SCALES["quick"]
    cora = tmp_path / "copy.npz"
    cora.write_bytes(CORA_PATH.read_bytes())
    assert claim.with_data(s, cora).dataset == "Cora"  # recognised by 2708 x 1433
    a = claim.with_data(s, write_sbm(tmp_path / "a.npz", seed=0))
    b = claim.with_data(s, write_sbm(tmp_path / "b.npz", seed=1))
    assert (a.dataset, a.data_path) == ("a", str((tmp_path / "a.npz").resolve()))
    assert len(a.data_sha256) == 64 and a.data_sha256 != b.data_sha256
    c = claim.conditions(s)[0]
    key = lambda st: run_key("C13", claim.version, "quick", st, c, 0)  # noqa: E731
    assert len({key(s), key(a), key(b), key(dataclasses.replace(b, data_path=a.data_path))}) == 4
    assert load_graph(tmp_path / "a.npz").x.shape == (160, 32)


def test_a_user_graph_runs_through_reproduce_and_replicates(tmp_path):
    path = write_sbm(tmp_path / "blocks.npz")
    with Store(tmp_path / "s.sqlite") as store:
        outs = reproduce(
            select_claims("C13"), scale="tiny", store=store, workdir=tmp_path, seeds=3,
            replicate=True, data_path=path,
        )  # fmt: skip
        assert [o.status != "error" for o in outs] == [True, True], [o.reason for o in outs]
        assert outs[1].seeds == [1000, 1001, 1002]
        row = store.latest_verdict("C13", "tiny")
        assert row is not None
        ev = row.evidence
        assert ev["settings"]["dataset"] == "blocks" and "blocks:" in row.reason
        assert all(t["title"].startswith("blocks:") for t in ev["tables"])
        assert any("no published number" in note for note in ev["notes"])
        control = next(c for c in ev["checks"] if c["kind"] == "control")
        assert "majority class" in control["name"]
        n = ev["numbers"]
        # the positive control's effect: the 2-layer GCN far above the 25% majority class
        assert n["acc_plain_L2"] > n["chance"] + 0.3, n
        assert len(row.run_ids) == 5 * 2 * 3


def test_initial_residual_beats_plain_gcn_at_depth_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C13"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status != "error", out.reason
        row = store.latest_verdict("C13", "tiny")
        assert row is not None
        n = row.evidence["numbers"]
        assert n["acc_initial_L8"] > n["acc_plain_L8"] + 0.1
        # the report sets the measurement beside the published numbers for Cora
        titles = [t["title"] for t in row.evidence["tables"]]
        assert any("published" in t for t in titles) and all(t.startswith("Cora") for t in titles)
        sources = [c["source"] for c in row.evidence["literature"]]
        assert any("Kipf & Welling" in s for s in sources)
        assert len(row.run_ids) == 5 * 2  # 5 variants x 2 depths at one seed
        assert all(store.metrics(r) for r in row.run_ids)


def test_reproduce_refuses_a_bad_graph_in_one_line_before_any_run(tmp_path, capsys):
    from skiplab.cli import main

    bad = write_sbm(tmp_path / "notest.npz", test_mask=np.zeros(160, bool))
    store = tmp_path / "s.sqlite"
    code = main(["reproduce", "--claims", "C13", "--data-path", str(bad), "--store", str(store)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "notest.npz" in lines[0] and "'test_mask' selects no node" in lines[0]
    with Store(store) as s:
        assert s.latest_verdict("C13", "quick") is None
