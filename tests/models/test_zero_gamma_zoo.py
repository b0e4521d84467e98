"""Zero-gamma makes every residual block of every model in the zoo an exact identity at init.

Generic over the registry: families added later are covered without editing this file. A model
whose blocks cannot take zero-gamma (no normalisation in the branch, or no ``branch_init``) must
say so clearly when asked for it.
"""

import pytest
import torch

import skiplab
from skiplab.models import example_inputs
from skiplab.nn import Residual, ZeroGamma


def _build(name):
    torch.manual_seed(0)
    return skiplab.create_model(name, skip=True, branch_init=ZeroGamma())


@pytest.mark.parametrize("name", skiplab.list_models())
def test_zero_gamma_block_is_exact_identity_at_init(name):
    try:
        model = _build(name)
    except ValueError as err:
        # ZeroGamma does not apply: the error must name it (or the branch_init option).
        assert "ZeroGamma" in str(err) or "branch_init" in str(err), str(err)
        return
    blocks = [m for m in model.modules() if isinstance(m, Residual) and m.skip]
    if not blocks:
        pytest.skip(f"{name} has no residual (Residual) blocks")
    seen = []

    def record(module, inputs, output):
        seen.append((module, inputs[0], output))

    handles = [b.register_forward_hook(record) for b in blocks]
    model.eval()
    with torch.no_grad():
        model(*example_inputs(name))
    for h in handles:
        h.remove()
    assert len(seen) >= len(blocks)
    for block, x, y in seen:
        assert block.shortcut is not None
        # y = post(shortcut(x) + 0) bit for bit: x itself for an identity shortcut and post,
        # the subsampled/padded (option A) or projected (option B) x for a downsampling block.
        expected = block.post(block.shortcut(x))
        assert torch.equal(y, expected), f"{name}: block {block._skiplab_name} is not identity"


def test_without_zero_gamma_blocks_are_not_identities():
    torch.manual_seed(0)
    model = skiplab.create_model("resmlp", depth=6).eval()
    block = model.blocks[1]
    x = torch.rand(4, model.cfg.width)
    assert not torch.allclose(block(x), x)


def test_zero_gamma_without_a_norm_says_so():
    with pytest.raises(ValueError, match="ZeroGamma needs a normalisation layer"):
        Residual(torch.nn.Linear(4, 4), branch_init=ZeroGamma())
