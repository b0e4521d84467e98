import numpy as np
import pytest
import torch

from skiplab.claims import reproduce, select_claims
from skiplab.claims.c07_resnet_as_optimizer import (
    EqualityQP,
    PrimalDualStep,
    random_constrained_least_squares,
    random_qp,
    unrolled_distances,
)
from skiplab.store import Store


def test_kkt_fixed_point_of_the_residual_block():
    rng = np.random.default_rng(0)
    qp = random_qp(5, 2, rng)
    star = torch.from_numpy(qp.kkt())[None]
    step = PrimalDualStep(qp, alpha=0.1)
    # the branch vanishes exactly at the KKT point, so z* = z* + f(z*)
    assert step(star).abs().max() < 1e-12
    y = star[0, :5].numpy()
    np.testing.assert_allclose(qp.a @ y, qp.b, atol=1e-12)


def test_constrained_least_squares_kkt_matches_null_space_solution():
    problem, y_null = random_constrained_least_squares(6, 2, 24, np.random.default_rng(1))
    np.testing.assert_allclose(problem.kkt()[:6], y_null, atol=1e-10)


def test_residual_iteration_converges_at_the_predicted_rate_plain_does_not():
    qp = random_qp(6, 2, np.random.default_rng(2))
    dist, rate = unrolled_distances(qp, 400, skip=True)
    assert rate < 1 and dist[-1] < 1e-10
    k = 40  # linear rate: the distance shrinks about like rate**k (up to a constant)
    assert dist[k] < 50 * rate**k
    plain, _ = unrolled_distances(qp, 400, skip=False)
    assert plain[-1] > 0.5


def test_bad_problem_shapes_are_named():
    with pytest.raises(ValueError, match=r"needs Q \(n, n\)"):
        EqualityQP(np.eye(3), np.zeros(3), np.ones((1, 2)), np.zeros(1))


def test_claim_holds_at_tiny_scale(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C07"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status == "holds", out.reason
        num = store.latest_verdict("C07", "tiny").evidence["numbers"]
    assert num["qp_residual_final_dist"] < 1e-6 and num["cls_residual_final_dist"] < 1e-6
    assert num["learned_residual_cos_grad"] > num["learned_plain_cos_grad"] + 0.2
