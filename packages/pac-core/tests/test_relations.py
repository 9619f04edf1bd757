"""The true relations between the PAC ops and torch's own ops (docs/semantics.md §3, §7 L16)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from _utils import randn

from pac_core import pacconv2d, pacconv_transpose2d, packernel2d, pacpool2d

CONV_GEOS = [
    dict(stride=1, padding=1, dilation=1),
    dict(stride=2, padding=0, dilation=1),
    dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
    dict(stride=1, padding=3, dilation=1),  # padding > d(k−1)/2
]


def _ones_kernel(b, k, out_hw):
    k = (k, k) if isinstance(k, int) else k
    return torch.ones(b, 1, k[0], k[1], *out_hw, dtype=torch.float64)


@pytest.mark.parametrize("geo", CONV_GEOS)
@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("k", [1, 3, (3, 5)])
def test_flat_pacconv2d_is_conv2d(backend_name, geo, groups, k):
    x = randn(2, 4, 6, 7, seed=1)
    kk = (k, k) if isinstance(k, int) else k
    w, b = randn(6 if groups != 4 else 8, 4 // groups, *kk, seed=2), randn(6 if groups != 4 else 8)
    ref = F.conv2d(x, w, b, groups=groups, **geo)
    y = pacconv2d(x, _ones_kernel(2, kk, ref.shape[-2:]), w, b, groups=groups, **geo)
    torch.testing.assert_close(y, ref)


def test_flat_shared_filters_is_depthwise_conv(backend_name):
    x, w, b = randn(2, 3, 6, 7, seed=1), randn(1, 1, 3, 3, seed=2), randn(3)
    ref = F.conv2d(x, w.expand(3, 1, 3, 3), b, padding=1, groups=3)
    y = pacconv2d(x, _ones_kernel(2, 3, (6, 7)), w, b, padding=1, shared_filters=True)
    torch.testing.assert_close(y, ref)


T_GEOS = [
    dict(stride=2, padding=1, output_padding=1, dilation=1),
    dict(stride=1, padding=0, output_padding=0, dilation=1),
    dict(stride=3, padding=0, output_padding=2, dilation=2),
    dict(stride=(2, 1), padding=(2, 0), output_padding=(1, 0), dilation=(1, 2)),
    dict(stride=2, padding=3, output_padding=0, dilation=1),  # crops (P < 0)
]


@pytest.mark.parametrize("geo", T_GEOS)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_flat_pacconv_transpose2d_is_flipped_conv_transpose2d(backend_name, geo, groups, k):
    x = randn(2, 4, 4, 5, seed=1)
    w, b = randn(4, 6 // groups, k, k, seed=2), randn(6)
    ref = F.conv_transpose2d(x, w.flip(-1, -2), b, groups=groups, **geo)
    y = pacconv_transpose2d(x, _ones_kernel(2, k, ref.shape[-2:]), w, b, groups=groups, **geo)
    torch.testing.assert_close(y, ref)
    if k > 1:  # the convention matters: without the flip they differ
        assert not torch.allclose(y, F.conv_transpose2d(x, w, b, groups=groups, **geo))


def test_flat_shared_transposed_is_depthwise(backend_name):
    x, w = randn(1, 3, 4, 5, seed=1), randn(1, 1, 3, 3, seed=2)
    ref = F.conv_transpose2d(x, w.flip(-1, -2).expand(3, 1, 3, 3), None, stride=2, padding=1,
                             output_padding=1, groups=3)
    y = pacconv_transpose2d(x, _ones_kernel(1, 3, ref.shape[-2:]), w, None, 2, 1, 1,
                            shared_filters=True)
    torch.testing.assert_close(y, ref)


POOL_GEOS = [(3, 1, 1), (3, 2, 1), (5, 2, 2), (1, 1, 0)]


@pytest.mark.parametrize("k,s,p", POOL_GEOS)
def test_flat_pacpool2d_is_window_sum(backend_name, k, s, p):
    x = randn(2, 3, 6, 7, seed=1)
    ref = k * k * F.avg_pool2d(x, k, s, p, count_include_pad=True)
    y = pacpool2d(x, _ones_kernel(2, k, ref.shape[-2:]), k, s, p)
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("k,s,p", POOL_GEOS)
def test_normalized_constant_guidance_pool_is_avg_pool(backend_name, k, s, p):
    x = randn(2, 3, 6, 7, seed=1)
    K, _ = packernel2d(torch.full((2, 2, 6, 7), -1.5, dtype=torch.float64), kernel_size=k,
                       stride=s, padding=p, normalize_kernel=True)
    ref = F.avg_pool2d(x, k, s, p, count_include_pad=False)
    torch.testing.assert_close(pacpool2d(x, K, k, s, p), ref)


def test_unnormalized_mask_rescales_by_valid_over_unmasked(backend_name):
    # ρ re-weights a window by (#valid taps / #unmasked valid taps): with a flat kernel the
    # masked pool of a constant image is the constant times #valid taps, wherever ρ ≠ 0.
    mask = (randn(1, 1, 6, 7, seed=3) > 0).double()
    K, out_mask = packernel2d(torch.zeros(1, 1, 6, 7, dtype=torch.float64), mask, kernel_size=3,
                              padding=1)
    y = pacpool2d(torch.full((1, 1, 6, 7), 2.0, dtype=torch.float64), K, 3, 1, 1)
    n_valid = F.avg_pool2d(torch.ones(1, 1, 6, 7, dtype=torch.float64), 3, 1, 1,
                           count_include_pad=True) * 9
    m = out_mask[:, :, 0, 0]
    torch.testing.assert_close(y[m], 2.0 * n_valid[m])
    assert (y[~m] == 0).all()
