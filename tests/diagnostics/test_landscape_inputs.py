"""Loss landscapes on a model's real inputs: keyword arguments, a task, ``ModelOutput``s."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import zoo

from skiplab.diagnostics import filter_normalized_direction, loss_line, loss_plane
from skiplab.diagnostics._inputs import Inputs, Task, infer_task
from skiplab.models import create_model


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == saved.keys() and all(torch.equal(now[k], saved[k]) for k in saved)


def _loss_now(model: torch.nn.Module, inputs: Inputs, task: Task) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        loss = float(task.loss(inputs(model), inputs))
    model.train(was)
    return loss


def _shifted_loss(model, inputs, task, directions, coords) -> float:
    other = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in other.named_parameters():
            p.add_(sum(c * d[n] for c, d in zip(coords, directions)))
    return _loss_now(other, inputs, task)


def _gpt2_keyword_inputs():
    model, inputs, _ = zoo.build("gpt2")
    (ids,) = inputs.args
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # the second sequence is left-padded by two tokens
    return model, {"input_ids": ids, "attention_mask": mask}


def test_gpt2_next_token_line_centre_is_the_loss_and_weights_are_restored():
    model, kwargs = _gpt2_keyword_inputs()
    model.train()  # dropout is on in training mode: the landscape must run in eval mode
    saved = _state(model)
    inputs = Inputs.of(kwargs)
    task = infer_task(model.eval(), inputs)
    model.train()
    assert task.kind == "next-token"
    line = loss_line(model, kwargs, alphas=[-0.5, 0.0, 0.25], seed=1)
    assert _same_state(model, saved) and model.training
    assert line.alphas[1] == 0.0
    assert line.loss[1] == pytest.approx(_loss_now(model, inputs, task), rel=1e-6)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    assert line.loss[2] == pytest.approx(_shifted_loss(model, inputs, task, [d], [0.25]), rel=1e-5)
    assert line.loss[0] != pytest.approx(line.loss[1], rel=1e-3)  # the direction moves the loss
    # the same with the task given and the inputs as Inputs
    again = loss_line(model, inputs, task=task, alphas=[-0.5, 0.0, 0.25], seed=1)
    assert again.loss == line.loss


def test_gcnii_node_classification_plane_and_default_line():
    model, inputs, target = zoo.build("gcnii")
    saved = _state(model)
    task = infer_task(model.eval(), inputs, target=target)
    assert task.kind == "classification"
    loss = _loss_now(model, inputs, task)
    line = loss_line(model, inputs, target)  # (x, edge_index): not batched, taken whole
    assert len(line.alphas) == 41 and line.alphas[20] == 0.0
    assert line.loss[20] == pytest.approx(loss, rel=1e-6)
    plane = loss_plane(model, inputs, target, span=0.5, steps=3, seed=2)
    assert _same_state(model, saved)
    assert plane.loss[1][1] == pytest.approx(loss, rel=1e-6)
    gen = torch.Generator().manual_seed(2)
    d1, d2 = filter_normalized_direction(model, gen), filter_normalized_direction(model, gen)
    for j, i in ((0, 2), (2, 0)):
        expected = _shifted_loss(model, inputs, task, [d1, d2], [plane.xs[i], plane.ys[j]])
        assert plane.loss[j][i] == pytest.approx(expected, rel=1e-5)
    # grid points batched by vmap over functional_call: the same numbers, PyG's scatters too
    vmapped = loss_plane(model, inputs, target, span=0.5, steps=3, seed=2, chunk=4)
    torch.testing.assert_close(
        torch.tensor(vmapped.loss), torch.tensor(plane.loss), rtol=1e-5, atol=0
    )
    assert _same_state(model, saved)


def test_an_inferred_loss_a_loss_fn_and_a_task_give_the_same_numbers():
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1, num_classes=3)
    x, y = torch.randn(8, 1, 12), torch.randint(0, 3, (8,))
    old = loss_line(model, (x,), y, loss_fn=F.cross_entropy, alphas=[-1.0, 0.0, 1.0])
    assert loss_line(model, x, y, alphas=[-1.0, 0.0, 1.0]).loss == old.loss
    old_plane = loss_plane(model, (x,), y, loss_fn=F.cross_entropy, steps=3)
    new_plane = loss_plane(model, Inputs((x,)), task=Task("classification", y), steps=3)
    assert new_plane.loss == old_plane.loss
    chunked = loss_plane(model, (x,), y, steps=3, chunk=4)  # vmapped, keyword-free model
    torch.testing.assert_close(
        torch.tensor(chunked.loss), torch.tensor(old_plane.loss), rtol=1e-5, atol=0
    )


def test_weights_are_restored_when_the_loss_fails_and_calls_are_checked():
    torch.manual_seed(0)
    model = create_model("resnet20", dim=1, in_channels=1, num_classes=3)
    x, y = torch.randn(4, 1, 12), torch.randint(0, 3, (4,))
    saved = _state(model)
    calls = []

    def flaky(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("loss failed at the third point")
        return F.cross_entropy(out, target)

    with pytest.raises(RuntimeError, match="third point"):
        loss_line(model, (x,), y, loss_fn=flaky, alphas=[-1.0, 0.5, 1.0])
    assert _same_state(model, saved)
    with pytest.raises(TypeError, match="task= or target"):
        loss_line(model, (x,), y, task=Task("classification", y))
    with pytest.raises(TypeError, match="the second argument is the model's inputs.*loss_fn="):
        loss_line(model, F.cross_entropy, (x,))  # a loss where the inputs go
    with pytest.raises(ValueError, match="cannot infer a loss"):
        loss_line(model, (x,))
