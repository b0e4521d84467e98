"""Hostile strings in the store stay data: inert in the HTML report, verbatim in SQLite."""

import json

from skiplab.report import build_report
from skiplab.store import Store

EVIL = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>document.title='pwned'</script>",
    "' onmouseover='alert(2)",
]
SQL = ["x'; DROP TABLE runs;--", 'Robert"); DELETE FROM verdicts; --', "1 OR 1=1"]


def test_hostile_names_and_values_are_inert_in_the_report(tmp_path):
    store_path = tmp_path / "s.sqlite"
    with Store(store_path) as store:
        run_ids = []
        for i, evil in enumerate(EVIL + SQL):
            rid = store.start_run(evil, "claim", {"name": evil, evil: [evil]}, claim="C01", seed=i)
            store.log_metrics(rid, 1, {"loss": 0.5})
            store.finish_run(rid, "completed", error=evil, results={evil: evil})
            run_ids.append(rid)
        evidence = {
            "numbers": {evil: 1.0 for evil in EVIL},
            "tables": [
                {
                    "title": EVIL[0],
                    "columns": [EVIL[1], "v"],
                    "rows": [[EVIL[2], EVIL[3]]],
                    "note": EVIL[0],
                }
            ],
            "series": {},
            "notes": EVIL,
        }
        store.save_verdict("C01", "residual-toy", "tiny", "holds", EVIL[2], evidence, [0], run_ids)
        index = build_report(store, tmp_path / "report", scale="tiny", errors={"C01": EVIL[0]})
        html = index.read_text()
        # Every hostile string is present only in escaped form: no tag or attribute is injected.
        for evil in EVIL:
            assert evil not in html
        assert "<script" not in html.lower()
        assert "<img src=x" not in html and "' onmouseover='" not in html
        assert "&lt;script&gt;alert(" in html and "&lt;/script&gt;" in html
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html  # quotes escaped too
        records = json.loads((tmp_path / "report" / "claims.json").read_text())
        assert records[0]["reason"] == EVIL[2]  # JSON keeps the data exact
        # SQL-looking names and values are stored and read back verbatim; no table was dropped.
        names = [store.run(rid).name for rid in run_ids]
        assert names == EVIL + SQL
        for rid, text in zip(run_ids, EVIL + SQL):
            run = store.run(rid)
            assert run.config == {"name": text, text: [text]} and run.error == text
            assert store.results(rid) == {text: text}
        assert len(store.runs()) == len(EVIL + SQL) and store.latest_verdict("C01") is not None
        assert store.integrity_ok()
