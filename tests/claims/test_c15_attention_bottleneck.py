"""C15 at tiny scale: attention opens a direct gradient path to the early inputs."""

import numpy as np

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c15_attention_bottleneck import Result, Row
from skiplab.store import Store


def _verdict(long_att, long_fix, short_gap=0.0):
    """The verdict on reversal accuracies per seed at the longest length (3 and 6)."""
    rows = [Row("reverse", 3, "additive", [0.5 + short_gap], [0.0]),
            Row("reverse", 3, "none", [0.5], [0.0]),
            Row("reverse", 6, "additive", long_att, [0.0] * len(long_att)),
            Row("reverse", 6, "none", long_fix, [0.0] * len(long_fix))]  # fmt: skip
    r = Result([3, 6], rows, {}, [], steps=20, hidden=16, seeds=list(range(len(long_att))))
    return Verdict.from_checks(select_claims("C15")[0].checks(r)).status


def test_criterion_keeps_the_three_way_rule():
    assert _verdict([0.6, 0.7], [0.3, 0.4], short_gap=0.1) == "holds"
    assert _verdict([0.6, 0.7], [0.3, 0.4], short_gap=0.5) == "inconclusive"  # gap not growing
    assert _verdict([0.5, 0.7], [0.3, 0.6], short_gap=0.1) == "inconclusive"  # ranges overlap
    assert _verdict([0.3, 0.4], [0.3, 0.4]) == "fails"  # the fixed context is as good
    assert _verdict([np.nan, 0.9], [0.3, 0.4], short_gap=0.1) == "inconclusive"  # a diverged run


def test_c15_tiny_attention_reaches_the_first_input(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C15")
        (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
        assert outcome.status in ("holds", "fails", "inconclusive")
        row = store.latest_verdict("C15", "tiny")
        assert row is not None
        r = Result.from_json(row.evidence["summary"])
        long = max(r.lengths)
        for attention in ("none", "additive", "dot"):
            assert np.mean(r.acc("reverse", long, attention)) > 0.15  # above chance 0.1
        assert row.evidence["numbers"][f"acc_reverse|{long}|none"] == np.mean(
            r.acc("reverse", long, "none")
        )
        weights = np.asarray(r.weights)
        assert weights.shape == (long, long)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        # reversal's first output needs the last input, its last output the first input: with
        # attention the gradient reaching position 0 is no smaller, relative to the last
        # position, than through the fixed context's chain of encoder steps
        g_fix, g_att = (np.asarray(r.grads[a]) for a in ("none", "additive"))
        assert g_att[0] / g_att[-1] > g_fix[0] / g_fix[-1]
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["attention_bottleneck.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
