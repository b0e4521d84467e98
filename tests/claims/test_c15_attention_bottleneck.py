"""C15: attention against the fixed context, decided on paired intervals over seeds."""

import math

import numpy as np

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c15_attention_bottleneck import Result, Row, attention_gap, attention_growth

SHORT = (0.97, 0.95, 0.96)  # both models solve the shortest length


def _result(long_att, long_fix, short_att=SHORT, short_fix=SHORT, extras=False):
    """A summary of reversal accuracies per seed at lengths 3 and 6."""
    n = len(long_att)
    rows = [Row("reverse", 3, "additive", list(short_att), [0.0] * n),
            Row("reverse", 3, "none", list(short_fix), [0.0] * n),
            Row("reverse", 6, "additive", list(long_att), [0.0] * n),
            Row("reverse", 6, "none", list(long_fix), [0.0] * n)]  # fmt: skip
    grads = {"none": [1e-3, 1e-2, 1e-1], "additive": [1e-1, 1e-1, 1e-1]}
    if extras:
        rows += [Row("reverse", 6, "dot", [0.8] * n, [0.0] * n),
                 Row("copy", 6, "none", [0.3] * n, [0.0] * n),
                 Row("copy", 6, "additive", [0.7] * n, [0.0] * n)]  # fmt: skip
        grads["dot"] = [1e-1, 1e-1, 1e-1]
    weights = np.eye(3)[::-1].tolist()
    return Result([3, 6], rows, grads, weights, steps=20, hidden=16, seeds=list(range(n)))


def _verdict(*args, **kwargs) -> Verdict:
    claim = select_claims("C15")[0]
    r = _result(*args, **kwargs)
    return Verdict.from_checks(claim.checks(r), claim.detail(r))


def test_the_effect_is_a_paired_difference_over_seeds():
    r = _result([0.6, 0.7, 0.65], [0.3, 0.35, 0.32], short_att=(1.0, 0.98, 0.99))
    gap, growth = attention_gap(r, 6), attention_growth(r)
    assert gap is not None and growth is not None
    assert math.isclose(gap.mean, (0.30 + 0.35 + 0.33) / 3) and gap.n == 3 and gap.lo > 0
    # the per-seed growth subtracts each seed's own short-length gap (0.03, 0.03, 0.03)
    assert math.isclose(growth.mean, gap.mean - 0.03)


def test_criterion_holds_fails_and_is_inconclusive_as_stated():
    assert _verdict([0.6, 0.7, 0.65], [0.3, 0.35, 0.32]).status == "holds"
    v = _verdict([0.3, 0.4, 0.35], [0.3, 0.4, 0.36])  # the fixed context is as good
    assert v.status == "fails" and "attention beats the fixed context" in v.reason
    v = _verdict([0.7, 0.3, 0.6], [0.35, 0.35, 0.35])  # better on average, interval spans 0
    assert v.status == "inconclusive" and "excludes 0" in v.reason
    # attention's lead at the longest length is no larger than at the shortest: no bottleneck
    v = _verdict([0.55, 0.60, 0.58], [0.45, 0.52, 0.49], short_att=(1.0, 0.99, 1.0),
                 short_fix=(0.9, 0.91, 0.92))  # fmt: skip
    assert v.status == "inconclusive" and "the gap grows" in v.reason
    assert _verdict([np.nan, 0.9, 0.8], [0.3, 0.4, 0.3]).status == "inconclusive"  # diverged


def test_a_failed_positive_control_makes_it_inconclusive():
    v = _verdict([0.6, 0.7, 0.65], [0.3, 0.35, 0.32], short_fix=(0.5, 0.6, 0.55))
    assert v.status == "inconclusive" and "positive control failed" in v.reason
    assert "fixed context 0.550" in v.reason  # the control names the model that fell short
    v = _verdict([0.3, 0.4, 0.35], [0.3, 0.4, 0.36], short_att=(0.5, 0.5, 0.5))
    assert v.status == "inconclusive"  # a failed control wins over a failed claim check


def test_figures_draw_with_and_without_the_full_scale_extras(tmp_path):
    claim = select_claims("C15")[0]
    for extras in (False, True):
        r = _result([0.6, 0.7, 0.65], [0.3, 0.35, 0.32], extras=extras)
        (fig,) = claim.figures(r, tmp_path / str(extras))
        assert (tmp_path / str(extras) / fig.path).stat().st_size > 10_000
        assert ("full scale only" in fig.caption) is not extras
        assert ("dot-product attention" in claim.detail(r)) is extras


def test_c15_tiny_attention_reaches_the_first_input(tmp_path):
    from skiplab.store import Store

    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C15")
        outs = reproduce([claim], scale="tiny", store=store, workdir=tmp_path, replicate=True)
        assert [o.seeds for o in outs] == [[0, 1, 2], [1000, 1001, 1002]]
        for out in outs:
            assert out.status == "holds", out.reason
        row = store.latest_verdict("C15", "tiny")
        assert row is not None
        r = Result.from_json(row.evidence["summary"])
        short, long = min(r.lengths), max(r.lengths)
        n = row.evidence["numbers"]
        # the control: both models solve the shortest reversal ...
        for attention in ("none", "additive"):
            assert n[f"acc_reverse|{short}|{attention}"] >= 0.9
        # ... and attention's lead at the longest is large, on a paired interval above 0
        assert n["gap_lo"] > 0.1 and n["growth_lo"] > 0
        assert n[f"acc_reverse|{long}|none"] == np.mean(r.acc("reverse", long, "none"))
        weights = np.asarray(r.weights)
        assert weights.shape == (long, long)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        # reversal's first output needs the last input, its last output the first input: with
        # attention the gradient reaching position 0 is no smaller, relative to the last
        # position, than through the fixed context's chain of encoder steps
        g_fix, g_att = (np.asarray(r.grads[a]) for a in ("none", "additive"))
        assert g_att[0] / g_att[-1] > g_fix[0] / g_fix[-1]
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        # the fixed context degrades with length as in Bahdanau et al.'s Fig. 2; attention,
        # unlike RNNsearch-50, degrades too at this budget: reported as a disagreement
        lit = row.evidence["literature"]
        assert [c["agrees"] for c in lit] == [True, False, None]
        assert "deteriorates too" in lit[1]["measured"]
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["attention_bottleneck.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
