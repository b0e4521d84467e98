"""C03 at tiny scale: the temporal skip keeps dh_T/dh_0 alive where the plain RNN's vanishes."""

import numpy as np

from skiplab.claims import Evidence, Verdict, reproduce, select_claims
from skiplab.claims.c03_rnn_temporal_skip import SOLVED, TRAINED, VARIANTS, Result
from skiplab.store import Store

GOOD, BAD = 0.1 * SOLVED, 0.2  # test MSEs well below and above the "solved" bound (x 1/6)


def _verdict(mse: dict[str, list[float]], plain_grad: float = 1e-6) -> str:
    """The verdict on one length's MSEs (per seed) and a gradient half that holds."""
    grads = {n: {20: [50.0]} for n in VARIANTS}
    grads["plain"] = {20: [plain_grad]}
    r = Result(
        grad_lengths=[20], lengths=[10], grads=grads, mse={n: {10: v} for n, v in mse.items()},
        acc={n: {10: [0.0]} for n in TRAINED}, curves={n: [] for n in TRAINED}, steps=30,
        hidden=8, batch_size=64, seeds=[0],
    )  # fmt: skip
    return Verdict.from_checks(select_claims("C03")[0].checks(r)).status


def test_criterion_keeps_the_three_way_rule():
    skip_solves = {"plain": [BAD], "skip k=2": [GOOD], "skip k=2 (average)": [BAD]}
    assert _verdict(skip_solves) == "holds"
    assert _verdict(skip_solves, plain_grad=1.0) == "fails"  # the gradient half decides first
    assert _verdict({"plain": [GOOD], "skip k=2": [BAD], "skip k=2 (average)": [BAD]}) == "fails"
    assert _verdict({n: [BAD] for n in TRAINED}) == "inconclusive"  # nothing solved
    assert _verdict({n: [GOOD] for n in TRAINED}) == "inconclusive"  # both solve it
    # solved means every seed; a diverged (NaN) run never solves
    assert _verdict({"plain": [BAD], "skip k=2": [GOOD, BAD], "skip k=2 (average)": [BAD]}) == (
        "inconclusive"
    )
    assert _verdict({"plain": [BAD], "skip k=2": [GOOD, np.nan], "skip k=2 (average)": [BAD]}) == (
        "inconclusive"
    )


def test_c03_tiny_skip_keeps_the_gradient(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (claim,) = select_claims("C03")
        (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
        assert outcome.status in ("holds", "inconclusive"), (
            outcome.reason
        )  # never "the skip lost it"
        row = store.latest_verdict("C03", "tiny")
        assert row is not None
        r = Result.from_json(row.evidence["summary"])
        longest = max(r.grad_lengths)
        plain, skip = np.mean(r.grads["plain"][longest]), np.mean(r.grads["skip k=2"][longest])
        assert skip > 0.1 and plain < 1e-3 * skip
        # the convex merge decays, but slower than the plain RNN
        assert plain < np.mean(r.grads["skip k=2 (average)"][longest]) < skip
        assert row.evidence["numbers"][f"grad_T{longest}_plain"] == plain
        assert all(store.metrics(run_id) for run_id in row.run_ids)
        figs = claim.report_figures(Evidence.from_dict(row.evidence), tmp_path / "f")
        assert [f.path for f in figs] == ["rnn_temporal_skip.png"]
        assert (tmp_path / "f" / figs[0].path).stat().st_size > 10_000
