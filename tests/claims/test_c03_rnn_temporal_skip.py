"""C03: the temporal skip keeps dh_T/dh_0 alive and extends the longest recall span learned."""

import math

import numpy as np

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c03_rnn_temporal_skip import SOLVED, TRAINED, VARIANTS, Result
from skiplab.store import Store

LADDER = [5, 10, 20, 40]


def _result(plain: list[int], skip: list[int], plain_grad: float = 1e-6) -> Result:
    """A summary from each seed's longest rung solved (0: not even the shortest one)."""
    grads = {n: {200: [50.0] * len(plain)} for n in VARIANTS}
    grads["plain"] = {200: [plain_grad] * len(plain)}
    acc: dict[str, dict[int, list[float]]] = {}
    for name, longest in (("plain", plain), ("skip k=2", skip)):
        acc[name] = {t: [] for t in LADDER}
        for top in longest:  # solved up to `top`, then one failed rung, then not reached
            failed = [t for t in LADDER if t > top][:1]
            for t in LADDER:
                acc[name][t].append(1.0 if t <= top else 0.25 if t in failed else math.nan)
    return Result(
        grad_lengths=[200], lengths=LADDER, grads=grads, acc=acc,
        steps={n: {t: [10.0] * len(plain) for t in LADDER} for n in TRAINED},
        longest={"plain": [float(v) for v in plain], "skip k=2": [float(v) for v in skip]},
        max_steps=600, hidden=16, symbols=4, seeds=list(range(len(plain))),
    )  # fmt: skip


def _decide(r: Result) -> Verdict:
    return select_claims("C03")[0].decide(r)


def test_the_skip_extending_the_longest_length_beyond_the_interval_holds():
    v = _decide(_result(plain=[5, 10, 20, 10, 5], skip=[40, 40, 40, 20, 40]))
    assert v.status == "holds", v.reason
    assert "skip - plain 26 [12.5, 39.5]" in v.reason and "t-interval" in v.reason


def test_no_extension_fails_and_a_live_plain_gradient_fails():
    assert _decide(_result(plain=[20, 10, 20], skip=[10, 10, 5])).status == "fails"
    v = _decide(_result(plain=[5, 10, 5], skip=[40, 40, 20], plain_grad=1.0))
    assert v.status == "fails" and "dh_T/dh_0" in v.reason  # the gradient half decides


def test_an_interval_that_reaches_zero_is_inconclusive():
    v = _decide(_result(plain=[5, 20, 10, 20], skip=[40, 10, 10, 20]))  # mean +6.25
    assert v.status == "inconclusive" and "excludes 0" in v.reason


def test_a_failed_positive_control_is_inconclusive_whatever_else():
    # one seed's plain RNN cannot solve even T=5: the budget is too small to decide anything
    v = _decide(_result(plain=[0, 10, 5], skip=[40, 40, 40]))
    assert v.status == "inconclusive" and "positive control failed" in v.reason
    v = _decide(_result(plain=[0, 40, 40], skip=[5, 5, 5]))  # beside a contradicted claim too
    assert v.status == "inconclusive" and "positive control failed" in v.reason


def test_a_ladder_the_plain_rnn_tops_is_inconclusive_not_a_failure():
    v = _decide(_result(plain=[40, 40, 40], skip=[40, 40, 40]))
    assert v.status == "inconclusive" and "reaches past it" in v.reason


def test_every_seed_agreeing_decides_only_with_enough_seeds():
    # the same difference in every seed: a zero-width t-interval, so the sign test decides
    assert _decide(_result(plain=[5] * 6, skip=[40] * 6)).status == "holds"
    v = _decide(_result(plain=[5] * 5, skip=[40] * 5))  # 5 seeds: p = 2^-4 > 0.05
    assert v.status == "inconclusive" and "sign test" in v.reason


def test_c03_tiny_and_its_replicate(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C03")
        outs = reproduce([claim], scale="tiny", store=store, workdir=tmp_path, replicate=True)
        assert [o.seedset for o in outs] == ["primary", "replicate"]
        assert outs[1].seeds == [1000, 1001, 1002, 1003, 1004, 1005]
        for out in outs:
            assert out.status == "holds", out.reason
        row = store.latest_verdict("C03", "tiny")
        assert row is not None
        r = Result.from_json(row.evidence["summary"])
        longest = max(r.grad_lengths)
        plain, skip = np.mean(r.grads["plain"][longest]), np.mean(r.grads["skip k=2"][longest])
        assert skip > 0.1 and plain < 1e-3 * skip
        # the convex merge decays, but slower than the plain RNN
        assert plain < np.mean(r.grads["skip k=2 (average)"][longest]) < skip
        # the plain RNN learns T=5 (the control) but not T=40; the skip learns both, every seed
        assert r.longest == {"plain": [5.0] * 6, "skip k=2": [40.0] * 6}
        assert all(a >= SOLVED for a in r.acc["plain"][5])
        assert all(a < 0.5 for a in r.acc["plain"][40])  # near guessing, 25%
        n = row.evidence["numbers"]
        assert n["effect_mean"] == 35 and n[f"grad_T{longest}_plain"] == plain
        checks = {c["kind"]: c for c in row.evidence["checks"]}
        assert checks["control"]["passed"] and checks["evidence"]["passed"]
        assert "sign test" in checks["evidence"]["measured"]
        lit = row.evidence["literature"]
        assert [c["agrees"] for c in lit] == [True, True, None]
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["rnn_temporal_skip.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
