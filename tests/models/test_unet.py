import pytest
import torch

from skiplab.models import create_model
from skiplab.models.unet import UNet, UNetConfig, nearest_valid_size, output_size
from skiplab.nn import count_skips


def test_paper_sizes_572_to_388():
    assert output_size(572, 4, "valid") == 388
    assert output_size(64, 4, "same") == 64


def test_bad_size_names_the_sizes_that_work():
    with pytest.raises(ValueError, match="nearest sizes that work: 188"):
        output_size(100, 4, "valid")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels = 4"):
        output_size(30, 2, "same")
    assert nearest_valid_size(90, 2, "valid") == 88
    assert nearest_valid_size(92, 2, "valid") == 92
    assert output_size(nearest_valid_size(570, 4), 4) > 0


def test_forward_refuses_misaligned_input():
    net = UNet(UNetConfig(levels=2, width=4))
    with pytest.raises(ValueError, match="does not align"):
        net(torch.randn(1, 1, 90, 90))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.randn(1, 3, 92, 92))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("merge", ["concat", "add"])
def test_variants_shapes_and_plain_twin(padding, merge):
    side = 92 if padding == "valid" else 64
    for skip in (True, False):
        net = UNet(UNetConfig(levels=2, width=4, padding=padding, merge=merge, skip=skip))
        out = net(torch.randn(2, 1, side, side))
        assert out.shape == (2, 2, output_size(side, 2, padding), output_size(side, 2, padding))
        assert count_skips(net) == (2 if skip else 0)


def test_long_skip_carries_fine_detail_the_plain_twin_cannot():
    # With the decoder cut from the bottleneck, a pixel-level change at the input reaches
    # the output only through the long skips.
    torch.manual_seed(0)
    for skip, moves in ((True, True), (False, False)):
        net = UNet(UNetConfig(levels=2, width=4, norm_layer=None, skip=skip)).eval()
        x = torch.randn(1, 1, 44, 44)
        with torch.no_grad():
            for p in net.bottleneck.parameters():
                p.zero_()
            a = net(x)
            x[0, 0, 22, 22] += 5.0
            b = net(x)
        assert bool((a - b).abs().max() > 1e-6) == moves


def test_bad_option_lists_allowed_values():
    with pytest.raises(ValueError, match="'valid', 'same'"):
        create_model("unet", padding="full")
