import sqlite3

import pytest

from skiplab.store import Store, StoreError


def test_runs_metrics_results_roundtrip(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("r1", "train", {"lr": 0.1, "name": "x'; DROP TABLE runs;--"}, seed=3)
        store.log_metrics(rid, 10, {"loss": 1.5, "acc": 0.25}, epoch=1)
        store.log_metrics(rid, 10, {"loss": 1.25}, epoch=1)  # re-logging a step replaces it
        store.finish_run(rid, "completed", results={"final": {"loss": 1.25}})
        run = store.run(rid)
        assert run.status == "completed" and run.seed == 3 and run.wall_s is not None
        assert run.config["name"] == "x'; DROP TABLE runs;--"  # stored verbatim
        assert store.metrics(rid, "loss") == [(10, 1, "loss", 1.25)]
        assert store.results(rid) == {"final": {"loss": 1.25}}
        assert [r.id for r in store.runs(kind="train")] == [rid]
        assert store.integrity_ok()
        with sqlite3.connect(tmp_path / "s.sqlite") as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_verdicts_latest_per_claim(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        store.save_verdict("C01", "residual-toy", "quick", "fails", "r", {"numbers": {}}, [0], [])
        store.save_verdict(
            "C01", "residual-toy", "quick", "holds", "r2", {"numbers": {"a": 1}}, [0, 1], [5]
        )
        store.save_verdict("C01", "residual-toy", "tiny", "fails", "r3", {}, [0], [])
        latest = store.latest_verdict("C01", "quick")
        assert latest is not None and latest.verdict == "holds" and latest.seeds == [0, 1]
        assert store.latest_verdicts("tiny")["C01"].reason == "r3"
        assert store.latest_verdict("C02") is None


def test_bad_status_and_verdict_are_refused(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("r", "train", {})
        with pytest.raises(ValueError, match="completed"):
            store.finish_run(rid, "done")
        with pytest.raises(ValueError, match="holds"):
            store.save_verdict("C01", "x", "quick", "maybe", "", {}, [], [])
        assert store.run(rid).status == "running"  # nothing lost by the refused write


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="bad.sqlite"):
        Store(bad)


def test_results_and_evidence_keep_the_order_they_were_written_in(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run("r", "claim", {"b": 1, "a": 2})
        store.finish_run(rid, "completed", results={"by_depth": {"110": 1, "24": 2, "8": 3}})
        store.save_verdict("C01", "x", "tiny", "holds", "ok", {"z": 1, "a": {"56": 0, "8": 1}},
                           [0], [rid])  # fmt: skip
        assert list(store.results(rid)["by_depth"]) == ["110", "24", "8"]
        row = store.latest_verdict("C01", "tiny")
        assert row is not None and list(row.evidence) == ["z", "a"]
        assert list(row.evidence["a"]) == ["56", "8"]
