import torch

from skiplab.models import ResNetConfig, create_model
from skiplab.nn import Residual, ReZero, ZeroGamma


def test_preactivation_block_order_and_clean_identity_path():
    net = create_model("preresnet20")
    block = net.blocks[0]
    assert isinstance(block.branch[0], torch.nn.BatchNorm2d)  # norm first: pre-activation
    assert isinstance(block.post, torch.nn.Identity)  # nothing on the identity path
    post = create_model("resnet20").blocks[0]
    assert isinstance(post.post, torch.nn.ReLU)


def test_zero_gamma_preact_net_blocks_are_exact_identities():
    net = create_model("preresnet56", branch_init=ZeroGamma()).eval()
    x = torch.randn(2, 16, 8, 8)
    for block in net.blocks[:9]:  # first stage: identity shortcuts
        assert torch.equal(block(x), x)


def test_rezero_via_scale_factory():
    net = create_model("resnet20", scale=lambda c: ReZero()).eval()
    blocks = [m for m in net.modules() if isinstance(m, Residual)]
    assert all(isinstance(b.scale, ReZero) for b in blocks)
    x = torch.relu(torch.randn(2, 16, 8, 8))
    assert torch.equal(blocks[0](x), x)


def test_option_b_and_one_d():
    net = create_model("resnet20", shortcut="B", dim=1, in_channels=2, num_classes=3)
    assert net(torch.randn(5, 2, 40)).shape == (5, 3)
    assert ResNetConfig(depth=56).blocks_per_stage == 9


def test_drop_path_increases_linearly():
    net = create_model("resnet20", drop_path=0.2)
    ps = [b.drop_path.p for b in net.blocks[1:]]
    assert ps == sorted(ps) and abs(ps[-1] - 0.2) < 1e-9
