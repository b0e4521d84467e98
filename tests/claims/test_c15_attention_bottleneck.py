"""C15 at tiny scale: attention opens a direct gradient path to the early inputs."""

import numpy as np

from skiplab.claims._base import Evidence, reproduce, select_claims
from skiplab.store import Store


def test_c15_tiny_attention_reaches_the_first_input(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    (claim,) = select_claims("C15")
    (outcome,) = reproduce([claim], scale="tiny", store=store, workdir=tmp_path)
    assert outcome.status in ("holds", "fails", "inconclusive")
    ev = Evidence.from_dict(store.latest_verdict("C15", "tiny").evidence)
    long = max(ev.series["lengths"])
    for attention in ("none", "additive", "dot"):
        assert np.mean(ev.series["acc"][f"reverse|{long}|{attention}"]) > 0.15  # above chance 0.1
    weights = np.asarray(ev.series["weights"])
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    # reversal's first output needs the last input, its last output the first input: with
    # attention the gradient reaching position 0 is no smaller, relative to the last position,
    # than through the fixed context's chain of encoder steps
    g_fix, g_att = (np.asarray(ev.series["grads"][a]) for a in ("none", "additive"))
    assert g_att[0] / g_att[-1] > g_fix[0] / g_fix[-1]
    assert claim.figures(ev, tmp_path)
