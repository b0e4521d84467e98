import json

from skiplab.report import build_report
from skiplab.store import Store


def test_report_escapes_user_data_and_lists_every_claim(tmp_path):
    evil = '<script>alert("x")</script>" onload="bad'
    with Store(tmp_path / "s.sqlite") as store:
        rid = store.start_run(evil, "train", {"note": evil})
        store.finish_run(rid, "completed")
        store.save_verdict(
            "C01", "residual-toy", "tiny", "fails", evil,
            {"numbers": {evil: 1.0}, "tables": [{"title": evil, "columns": [evil], "rows": [[evil]], "note": ""}],
             "series": {}, "seeds": [0], "run_ids": [rid], "notes": [evil]},
            [0], [rid], 1.0,
        )  # fmt: skip
        index = build_report(store, tmp_path / "out", scale="tiny")
    html = index.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'onload="bad' not in html
    assert 'id="C01"' in html
    records = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert records[0]["reason"] == evil  # JSON keeps the exact text; HTML escapes it


def test_claims_json_is_strict_json_even_with_nan_numbers(tmp_path):
    def strict(constant):
        raise ValueError(f"not JSON: {constant}")

    with Store(tmp_path / "s.sqlite") as store:
        store.save_verdict(
            "C09", "degradation", "tiny", "inconclusive", "a run diverged",
            {"numbers": {"mnist1d_plain56_train_loss": float("nan"), "gap": float("inf")},
             "tables": [], "notes": []},
            [0], [], 1.0,
        )  # fmt: skip
        build_report(store, tmp_path / "out", scale="tiny")
    text = (tmp_path / "out" / "claims.json").read_text()
    (record,) = json.loads(text, parse_constant=strict)
    assert record["numbers"] == {"mnist1d_plain56_train_loss": None, "gap": None}
