"""create_position_feats / create_YXRGB (docs/semantics.md §5.2, §5.3, §9)."""

from __future__ import annotations

import pytest
import torch

from pac_core import create_position_feats, create_YXRGB


def _img():
    c = torch.arange(3.0).view(1, 3, 1, 1)
    i = torch.arange(4.0).view(1, 1, 4, 1)
    j = torch.arange(5.0).view(1, 1, 1, 5)
    return 10 * c + i - j  # [1, 3, 4, 5]


def test_spec_example():
    out = create_YXRGB(_img(), yx_scale=2, rgb_scale=(1, 2, 4))
    assert out.shape == (1, 5, 4, 5) and out.dtype == torch.float32
    assert out[0, :, 3, 4].tolist() == pytest.approx([1.5, 2.0, -1.0, 4.5, 4.75])


def test_scales_argument_equivalent():
    a = create_YXRGB(_img(), scales=[2, 2, 1, 2, 4])
    b = create_YXRGB(_img(), yx_scale=(2, 2), rgb_scale=(1, 2, 4))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="scales"):
        create_YXRGB(_img(), yx_scale=2, scales=[1, 1, 1])
    with pytest.raises(ValueError, match="scales"):
        create_YXRGB(_img(), rgb_scale=2, scales=[1, 1, 1])


def test_unscaled_and_scalar_scale():
    out = create_YXRGB(_img())
    assert torch.equal(out[0, 0], torch.arange(4.0).view(4, 1).expand(4, 5))
    assert torch.equal(out[0, 1], torch.arange(5.0).view(1, 5).expand(4, 5))
    assert torch.equal(out[:, 2:], _img())
    half = create_YXRGB(_img(), rgb_scale=2.0)
    assert torch.equal(half[:, 2:], _img() * 0.5)


def test_leading_dims_folded():
    img = torch.randn(2, 3, 3, 4, 5)
    out = create_YXRGB(img, yx_scale=(1, 2))
    assert out.shape == (6, 5, 4, 5)
    assert torch.equal(out[:, 2:], img.reshape(6, 3, 4, 5))
    assert torch.equal(out[4, 1, 0], torch.arange(5.0) / 2)
    assert create_YXRGB(torch.randn(3, 4, 5)).shape == (1, 5, 4, 5)


def test_position_feats():
    p = create_position_feats((3, 4), bs=2)
    assert p.shape == (2, 2, 3, 4) and p.dtype == torch.float32
    assert torch.equal(p[1, 0, :, 0], torch.arange(3.0))
    assert torch.equal(p[1, 1, 0], torch.arange(4.0))
    s = create_position_feats((3, 4), scales=(3, 7))
    inv_y, inv_x = 1 / torch.tensor(3.0), 1 / torch.tensor(7.0)  # reciprocal, then multiply
    assert torch.equal(s[0, 0, :, 0], torch.arange(3.0) * inv_y)
    assert torch.equal(s[0, 1, 0], torch.arange(4.0) * inv_x)
    assert torch.equal(create_position_feats((3, 4), scales=2.0)[0, 1, 0], torch.arange(4.0) * 0.5)
    with pytest.raises(ValueError, match="scales"):
        create_position_feats((3, 4), scales=(1, 2, 3))
    p[0, 0, 0, 0] = 99  # copies, not views of one buffer
    assert p[1, 0, 0, 0] == 0


def test_learnable_scales_stay_in_graph():
    yx = torch.tensor([2.0, 3.0], requires_grad=True)
    rgb = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    out = create_YXRGB(_img(), yx_scale=yx, rgb_scale=rgb)
    out.sum().backward()
    assert yx.grad is not None and rgb.grad is not None
    assert yx.grad[0].item() == pytest.approx(-(5 * (0 + 1 + 2 + 3)) / 2.0**2)  # d(Σ i/s)/ds
    scales = torch.tensor([2.0, 3.0, 1.0, 2.0, 4.0], requires_grad=True)
    create_YXRGB(_img(), scales=scales).sum().backward()
    assert scales.grad is not None and torch.all(scales.grad != 0)


def test_float64_image_and_per_channel_check():
    out = create_YXRGB(_img().double(), yx_scale=2, rgb_scale=(1, 2, 4))
    assert out.dtype == torch.float64
    with pytest.raises(ValueError, match="rgb_scale"):
        create_YXRGB(_img(), rgb_scale=(1, 2))
