"""C03 at tiny scale: the temporal skip keeps dh_T/dh_0 alive where the plain RNN's vanishes."""

import numpy as np

from skiplab.claims._base import reproduce, select_claims
from skiplab.store import Store


def test_c03_tiny_skip_keeps_the_gradient(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    (claim,) = select_claims("C03")
    (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
    assert outcome.status in ("holds", "inconclusive"), outcome.reason  # never "the skip lost it"
    row = store.latest_verdict("C03", "tiny")
    grads = row.evidence["series"]["grads"]
    longest = str(max(row.evidence["series"]["grad_lengths"]))
    plain, skip = np.mean(grads["plain"][longest]), np.mean(grads["skip k=2"][longest])
    assert skip > 0.1 and plain < 1e-3 * skip
    # the convex merge decays, but slower than the plain RNN
    assert plain < np.mean(grads["skip k=2 (average)"][longest]) < skip
    figs = claim.figures(claim_evidence(row), tmp_path)
    assert (tmp_path / figs[0].path).stat().st_size > 10_000


def claim_evidence(row):
    from skiplab.claims._base import Evidence

    return Evidence.from_dict(row.evidence)
