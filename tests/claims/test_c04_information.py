import numpy as np
import pytest

from skiplab.claims import reproduce, select_claims
from skiplab.claims.c04_information import make_branch, sample_stack
from skiplab.diagnostics import gaussian_mi, stacked_mutual_information
from skiplab.store import Store


def test_sampled_stack_matches_its_closed_form():
    rng = np.random.default_rng(0)
    fs = [make_branch("random", 3, rng) for _ in range(2)]
    x, y = sample_stack(fs, np.eye(3), 0.5, True, 30_000, rng)
    closed = stacked_mutual_information(fs, np.eye(3), 0.5, True)[-1]
    assert gaussian_mi(x, y) == pytest.approx(closed, abs=0.05)
    with pytest.raises(ValueError, match="must be one of"):
        make_branch("dense", 3, rng)


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C04"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        num = store.latest_verdict("C04", "tiny").evidence["numbers"]
    # F = 0: the skip keeps I(X; X+N), the plain block nothing
    assert num["residual_zero_closed"] == pytest.approx(num["full_information"], rel=1e-12)
    assert num["plain_zero_closed"] == 0.0
    # a rank-2 branch passes at most a fraction of it without the skip
    assert num["plain_low-rank_closed"] < 0.6 * num["residual_low-rank_closed"]
    assert num["mlp_residual_last"] > 1.2 * num["mlp_plain_last"]
