import pytest
import torch
from torch import nn

from skiplab.nn import (
    CropAdd,
    CropConcat,
    DenseConcat,
    LayerConcat,
    SkipShapeError,
    center_crop,
    count_skips,
    name_skips,
)


def test_dense_concat_keeps_input_channels_and_plain_twin_drops_them():
    x = torch.randn(2, 3, 5, 5)
    dense = DenseConcat(nn.Conv2d(3, 4, 3, padding=1))
    y = dense(x)
    assert y.shape == (2, 7, 5, 5)
    assert torch.equal(y[:, :3], x)  # the input passes through untouched
    plain = DenseConcat(dense.branch, skip=False)
    assert plain(x).shape == (2, 4, 5, 5)
    assert count_skips(dense) == 1 and count_skips(plain) == 0


def test_center_crop_is_centred():
    coords = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 10, 10)
    cropped = center_crop(coords, (6, 6))
    assert cropped.shape == (1, 1, 6, 6)
    assert cropped[0, 0, 0].tolist() == [2, 3, 4, 5, 6, 7]


def test_crop_concat_crops_the_encoder_map_and_concatenates():
    enc, dec = torch.randn(2, 4, 12, 12), torch.randn(2, 3, 8, 8)
    out = CropConcat()(enc, dec)
    assert out.shape == (2, 7, 8, 8)
    assert torch.equal(out[:, :4], enc[:, :, 2:10, 2:10])
    assert torch.equal(out[:, 4:], dec)
    assert torch.equal(CropConcat(skip=False)(enc, dec), dec)


def test_crop_concat_refuses_odd_or_negative_margins_naming_the_block():
    block = name_skips(nn.ModuleDict({"up1": CropConcat()}))["up1"]
    with pytest.raises(SkipShapeError, match=r"'up1'.*margin 1 is odd"):
        block(torch.randn(1, 2, 9, 9), torch.randn(1, 2, 8, 8))
    with pytest.raises(SkipShapeError, match="negative"):
        block(torch.randn(1, 2, 6, 6), torch.randn(1, 2, 8, 8))


def test_crop_add_needs_equal_channels():
    enc, dec = torch.randn(1, 3, 10, 10), torch.randn(1, 3, 6, 6)
    assert torch.equal(CropAdd()(enc, dec), enc[:, :, 2:8, 2:8] + dec)
    with pytest.raises(SkipShapeError, match="channels"):
        CropAdd()(torch.randn(1, 4, 10, 10), dec)


def test_layer_concat_is_jumping_knowledge():
    hs = [torch.randn(5, 3) for _ in range(4)]
    assert LayerConcat()(hs).shape == (5, 12)
    assert torch.equal(LayerConcat(skip=False)(hs), hs[-1])
    with pytest.raises(SkipShapeError):
        LayerConcat()([torch.randn(5, 3), torch.randn(4, 3)])
