import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skiplab.diagnostics import filter_normalized_direction, loss_line, loss_plane, plot_plane
from skiplab.models import create_model


def _model():
    torch.manual_seed(0)
    return create_model("resnet20", dim=1, in_channels=1, num_classes=3)


def test_filter_normalisation_and_zeroed_biases_and_norms():
    model = _model()
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    for name, p in model.named_parameters():
        if p.dim() <= 1:  # biases, batch-norm scales and shifts (Li et al. §4)
            assert torch.count_nonzero(d[name]) == 0, name
        else:
            dn = d[name].reshape(p.shape[0], -1).norm(dim=1)
            pn = p.detach().reshape(p.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(dn, pn, rtol=1e-5, atol=1e-7)


def test_plane_matches_perturbed_copies_and_chunking():
    model = _model().train()
    x, y = torch.randn(16, 1, 12), torch.randint(0, 3, (16,))
    plane = loss_plane(model, (x,), y, loss_fn=F.cross_entropy, span=0.5, steps=5, seed=3, chunk=4)
    gen = torch.Generator().manual_seed(3)
    d1 = filter_normalized_direction(model, gen)
    d2 = filter_normalized_direction(model, gen)
    for j, i in ((0, 0), (1, 3), (2, 2), (4, 1)):
        a, b = plane.xs[i], plane.ys[j]
        other = copy.deepcopy(model).eval()
        with torch.no_grad():
            for n, p in other.named_parameters():
                p.add_(a * d1[n] + b * d2[n])
            expected = F.cross_entropy(other(x), y).item()
        assert plane.loss[j][i] == pytest.approx(expected, rel=1e-4)
    assert model.training  # evaluated in eval mode, the mode restored afterwards
    with torch.no_grad():
        centre = F.cross_entropy(model.eval()(x), y).item()
    assert plane.loss[2][2] == pytest.approx(centre, rel=1e-5)
    one = loss_plane(model, (x,), y, loss_fn=F.cross_entropy, span=0.5, steps=5, seed=3, chunk=1)
    np.testing.assert_allclose(one.loss, plane.loss, rtol=1e-5)


def test_line_and_plot(tmp_path):
    model = _model()
    x, y = torch.randn(8, 1, 12), torch.randint(0, 3, (8,))
    line = loss_line(model, (x,), y, loss_fn=F.cross_entropy, alphas=[-1.0, 0.0, 1.0])
    assert len(line.loss) == 3 and line.loss[1] <= max(line.loss[0], line.loss[2])
    plane = loss_plane(model, (x,), y, loss_fn=F.cross_entropy, steps=3)
    assert plot_plane({"m": plane.as_dict()}, tmp_path / "p.png").stat().st_size > 1000
