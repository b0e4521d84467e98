import math

import torch

import skiplab
from skiplab.claims import reproduce, select_claims
from skiplab.claims.c05_zero_gamma import budget_losses, identity_blocks
from skiplab.nn import ZeroGamma
from skiplab.store import Store


def test_identity_blocks_counts_exact_identities_only():
    x = torch.randn(4, 1, 40)
    torch.manual_seed(0)
    zg = skiplab.create_model("resmlp", depth=10, branch_init=ZeroGamma())
    assert identity_blocks(zg, x) == (5, 5)
    torch.manual_seed(0)
    std = skiplab.create_model("resmlp", depth=10)
    assert identity_blocks(std, x) == (0, 5)
    # the whole zero-gamma stack is its stem: head(stem(x)) exactly
    with torch.no_grad():
        assert torch.equal(zg.eval()(x), zg.head(zg.stem(x.flatten(1))))


def test_budget_losses_average_the_steps_before_each_budget():
    losses = [float(i) for i in range(1, 31)]
    assert budget_losses(losses, [10, 30]) == [5.5, 25.5]
    assert budget_losses(losses[:5], [10]) == [math.inf]


def test_claim_runs_at_tiny_scale_and_zero_gamma_rescues_the_deep_mlp(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        (out,) = reproduce(select_claims("C05"), scale="tiny", store=store, workdir=tmp_path)
        assert out.status in ("holds", "inconclusive"), out.reason
        num = store.latest_verdict("C05", "tiny").evidence["numbers"]
    assert num["ResMLP-100_identity_blocks"] == num["ResMLP-100_blocks"] == 50
    assert num["ResNet-20_identity_blocks"] == num["ResNet-20_blocks"] == 9
    # standard init: the 100-layer MLP's residual stream grows with depth and its loss starts
    # in the hundreds; zero-gamma starts at the stem's loss and trains at once
    assert (
        num["ResMLP-100_zero-gamma_lr0.1_final_loss"]
        < 0.1 * num["ResMLP-100_standard_lr0.1_final_loss"]
    )
