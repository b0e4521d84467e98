import numpy as np
import pytest
import torch

from skiplab.models.primal_dual import (
    EqualityQP,
    LearnedSolver,
    PrimalDualStep,
    QPFamily,
    alignment,
    gradient_step,
    random_constrained_least_squares,
    random_qp,
    unrolled_distances,
)


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


def test_family_solutions_satisfy_kkt_and_the_gradient_step_vanishes_there():
    family = QPFamily(5, 2, torch.Generator().manual_seed(0))
    p = family.sample(64, torch.Generator().manual_seed(1))
    assert p.params.shape == (64, 2 * 5 + 2) and family.n_params == 12
    torch.testing.assert_close(p.y @ p.a.T, p.b, atol=1e-4, rtol=0)  # feasible
    assert gradient_step(p, p.y).abs().max() < 1e-4  # stationary at (y*, lambda*)
    again = family.sample(64, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.y, p.y)  # the generator alone decides the problems


def test_alignment_of_an_exact_gradient_step_is_one():
    family = QPFamily(4, 1, torch.Generator().manual_seed(0))
    p = family.sample(32, torch.Generator().manual_seed(1))

    class GradientSolver(torch.nn.Module):  # y_{k+1} = y_k - 0.1 grad_y L_rho(y_k, lambda*)
        def forward(self, params):
            ys = [torch.zeros_like(p.y)]
            for _ in range(3):
                ys.append(ys[-1] + 0.1 * gradient_step(p, ys[-1]))
            return torch.stack(ys)

    out = alignment(GradientSolver(), p)
    assert len(out["cos_grad"]) == 3
    assert min(out["cos_grad"]) > 1 - 1e-5 and 0 < out["error"] < 1


def test_learned_solver_shapes_and_plain_twin():
    torch.manual_seed(0)
    res = LearnedSolver(5, 12, hidden=16, steps=4, skip=True)
    plain = LearnedSolver(5, 12, hidden=16, steps=4, skip=False)
    ys = res(torch.randn(3, 12))
    assert ys.shape == (5, 3, 5) and (ys[0] == 0).all()
    assert sum(p.numel() for p in res.parameters()) == sum(p.numel() for p in plain.parameters())
    assert "skip=False" in repr(plain)
