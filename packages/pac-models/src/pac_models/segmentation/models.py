"""FCN-8s backbones (docs/semantics.md §B.1): Caffe-style ``FCN8s``, ``FCN8sAltPad`` and the PAC-FCN
hot-swap ``FCN8sPac``.

All three take ``x [B, 3, H, W]`` (the B.5 input: mean-subtracted BGR, 0–255 scale) and return
logits ``[B, num_classes, H, W]``; ``forward(x, out_crop=(h, w))`` keeps the top-left ``h×w``.
Their ``state_dict`` keys and shapes are pacnet's (``conv1_1`` … ``conv5_3``, ``fc6``, ``fc7``,
``score_fr``, ``score_pool3``, ``score_pool4``, ``upscore2``, ``upscore_pool4``, ``upscore8``), the
same for the three variants, so pacnet and pytorch-fcn FCN-8s checkpoints load strictly.

There are no bundled ImageNet weights: :func:`load_backbone_weights` loads a VGG-16 (torchvision
layout) or FCN-8s state_dict from a local file or URL that you supply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pac_core import PacConv2d

from .. import weights as _w

__all__ = [
    "FCN8s",
    "FCN8sAltPad",
    "FCN8sBase",
    "FCN8sPac",
    "bilinear_kernel",
    "load_backbone_weights",
]

_BLOCKS = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"),
           ("conv4_1", "conv4_2", "conv4_3"), ("conv5_1", "conv5_2", "conv5_3"))
_PAC_LAYERS = ("conv3_3", "conv4_3", "conv5_3")
PAC_GUIDE_SCALE = 1e-4
"""FCN8sPac multiplies its guidance (``relu2_2``) by this before computing kernels."""


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """The ``[C, C, k, k]`` ConvTranspose2d weight of bilinear upsampling (the initialisation of
    docs/semantics.md §B.1).

    ``φ = ⌈k/2⌉``, centre ``φ−1`` (odd ``k``) or ``φ−0.5`` (even ``k``),
    ``w[i, j] = (1 − |i − centre|/φ)(1 − |j − centre|/φ)`` on the diagonal ``W[c, c]``, zero
    elsewhere (``k = 4``: ``(.25, .75, .75, .25)`` outer itself).
    """
    phi = (kernel_size + 1) // 2
    centre = phi - 1 if kernel_size % 2 == 1 else phi - 0.5
    r = torch.arange(kernel_size, dtype=torch.float64)
    f = 1 - (r - centre).abs() / phi
    w = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    idx = torch.arange(channels)
    w[idx, idx] = torch.outer(f, f)
    return w.float()


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    return value


class FCN8sBase(nn.Module):
    """Shared VGG-16 trunk and FCN-8s decoder; use :class:`FCN8s`, :class:`FCN8sAltPad` or
    :class:`FCN8sPac`.

    Args:
        num_classes: Number of output classes (21 for VOC, background included).
        width: Channels of the first block; blocks have ``width·(1, 2, 4, 8, 8)`` channels
            (64 = VGG-16; smaller values give small models with the same keys, for tests).
        fc_channels: Channels of ``fc6``/``fc7`` (4096 = VGG-16).
        init: ``'pacnet'`` (docs/semantics.md §B.1: every ``nn.Conv2d`` weight and bias zero, PAC
            layers keep their ``'uniform'`` filler; the usual start before loading a backbone) or
            ``'default'`` (PyTorch's default ``nn.Conv2d`` init, trainable from scratch). The
            transposed convolutions start as bilinear upsampling either way.

    Attributes:
        num_classes: The number of classes.
    """

    conv1_padding = 1
    fc6_padding = 3
    convt_paddings = (1, 1, 4)
    crop_offsets = (0, 0)
    pac = False

    def __init__(self, num_classes: int = 21, *, width: int = 64, fc_channels: int = 4096,
                 init: str = "pacnet") -> None:
        super().__init__()
        self.num_classes = _check_int("num_classes", num_classes)
        _check_int("width", width)
        _check_int("fc_channels", fc_channels)
        if init not in ("pacnet", "default"):
            raise ValueError(f"init must be 'pacnet' or 'default', got {init!r}")
        chans = (width, 2 * width, 4 * width, 8 * width, 8 * width)
        c_in = 3
        for block, c in zip(_BLOCKS, chans):
            for name in block:
                pad = self.conv1_padding if name == "conv1_1" else 1
                layer: nn.Module
                if self.pac and name in _PAC_LAYERS:
                    layer = PacConv2d(c_in, c, 3, padding=1)
                else:
                    layer = nn.Conv2d(c_in, c, 3, padding=pad)
                setattr(self, name, layer)
                c_in = c
        n = self.num_classes
        self.fc6 = nn.Conv2d(chans[4], fc_channels, 7, padding=self.fc6_padding)
        self.drop6 = nn.Dropout2d(0.5)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop7 = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(fc_channels, n, 1)
        self.score_pool3 = nn.Conv2d(chans[2], n, 1)
        self.score_pool4 = nn.Conv2d(chans[3], n, 1)
        p2, p4, p8 = self.convt_paddings
        self.upscore2 = nn.ConvTranspose2d(n, n, 4, stride=2, padding=p2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n, n, 4, stride=2, padding=p4, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n, n, 16, stride=8, padding=p8, bias=False)
        self.init = init
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise (see ``init``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if self.init == "pacnet":
                    nn.init.zeros_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                else:
                    m.reset_parameters()
            elif isinstance(m, nn.ConvTranspose2d):
                with torch.no_grad():
                    m.weight.copy_(bilinear_kernel(m.in_channels, m.kernel_size[0]))
            elif isinstance(m, PacConv2d):
                m.reset_parameters()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

    # ------------------------------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be [B, 3, H, W] (mean-subtracted BGR), got shape "
                             f"{tuple(x.shape)}")
        if self.conv1_padding != 100 and (x.shape[2] % 32 or x.shape[3] % 32):
            raise ValueError(
                f"{type(self).__name__} needs H and W divisible by 32, got x of shape "
                f"{tuple(x.shape)}; place the image top-left in a larger zero canvas (e.g. "
                "test crop 512) and pass out_crop=(h, w)"
            )

    def _trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns ``(pool3, pool4, fc7 output)``."""
        h = x
        guide: Optional[Tensor] = None
        feats: list[Tensor] = []
        for block in _BLOCKS:
            for name in block:
                layer = getattr(self, name)
                if isinstance(layer, PacConv2d):
                    assert guide is not None
                    g = F.interpolate(guide, size=h.shape[-2:], mode="bilinear",
                                      align_corners=False)
                    h = F.relu(layer(h, g * PAC_GUIDE_SCALE))
                else:
                    h = F.relu(layer(h))
                if name == "conv2_2":
                    guide = h  # relu2_2, the PAC guidance
            h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
            feats.append(h)
        h = self.drop6(F.relu(self.fc6(h)))
        h = self.drop7(F.relu(self.fc7(h)))
        return feats[2], feats[3], h

    def _decode(self, x: Tensor, pool3: Tensor, pool4: Tensor, fc7: Tensor) -> Tensor:
        s = self.upscore2(self.score_fr(fc7))
        o4, o3 = self.crop_offsets
        s = self.upscore_pool4(s + self._crop(self.score_pool4(pool4), o4, s))
        s = s + self._crop(self.score_pool3(pool3), o3, s)
        return self._final(s, x)

    @staticmethod
    def _crop(t: Tensor, offset: int, like: Tensor) -> Tensor:
        h, w = like.shape[-2:]
        if offset == 0:
            if t.shape[-2:] != like.shape[-2:]:
                raise RuntimeError(f"FCN-8s decoder: size mismatch {tuple(t.shape)} vs "
                                   f"{tuple(like.shape)}")
            return t
        return t[:, :, offset:offset + h, offset:offset + w]

    def _final(self, s: Tensor, x: Tensor) -> Tensor:
        return self.upscore8(s)

    def forward(self, x: Tensor, out_crop: Optional[tuple[int, int]] = None) -> Tensor:
        """Logits ``[B, num_classes, H, W]`` (or ``[…, h, w]`` with ``out_crop``).

        Args:
            x: ``[B, 3, H, W]`` mean-subtracted BGR image (B.5).
            out_crop: Optional ``(h, w)`` ≤ ``(H, W)``: keep the top-left ``h×w`` of the output.

        Raises:
            ValueError: wrong shape, H/W not divisible by 32 (``FCN8sAltPad``/``FCN8sPac``), or
                an ``out_crop`` larger than the input.
        """
        self._check_input(x)
        crop = _check_crop(out_crop, x)
        pool3, pool4, fc7 = self._trunk(x)
        out = self._decode(x, pool3, pool4, fc7)
        if out.shape[-2:] != x.shape[-2:]:
            raise RuntimeError(f"{type(self).__name__}: output {tuple(out.shape)} does not match "
                               f"the input {tuple(x.shape)}")
        if crop is not None and crop != tuple(out.shape[-2:]):
            out = out[:, :, :crop[0], :crop[1]]
        return out


def _check_crop(out_crop: Any, x: Tensor) -> Optional[tuple[int, int]]:
    if out_crop is None:
        return None
    try:
        h, w = (int(v) for v in out_crop)
    except (TypeError, ValueError):
        raise TypeError(f"out_crop must be None or (h, w), got {out_crop!r}") from None
    if not (0 < h <= x.shape[2] and 0 < w <= x.shape[3]):
        raise ValueError(f"out_crop {(h, w)} must lie within the input size "
                         f"{tuple(x.shape[-2:])}")
    return h, w


class FCN8s(FCN8sBase):
    """Caffe-style FCN-8s (``fcn8s``): ``conv1_1`` padding 100, crops 5 / 9 / 31; any input size.

    Args: as :class:`FCN8sBase`.
    """

    conv1_padding = 100
    fc6_padding = 0
    convt_paddings = (0, 0, 0)
    crop_offsets = (5, 9)

    def _final(self, s: Tensor, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return self.upscore8(s)[:, :, 31:31 + h, 31:31 + w]


class FCN8sAltPad(FCN8sBase):
    """FCN-8s without the padding-100 trick (``fcn8saltpad``): ``conv1_1`` padding 1, ``fc6``
    padding 3, transposed-conv paddings 1 / 1 / 4, no crops; H and W must be multiples of 32.

    Args: as :class:`FCN8sBase`.
    """


class FCN8sPac(FCN8sBase):
    """PAC-FCN, the "hot-swapping" variant (``fcn8spac``).

    As :class:`FCN8sAltPad`, but ``conv3_3``, ``conv4_3`` and ``conv5_3`` are
    :class:`~pac_core.PacConv2d` layers (same keys and shapes, so FCN-8s weights load strictly)
    guided by the ``relu2_2`` features, bilinear-resized to each layer's resolution and multiplied
    by ``1e-4`` (so the layers start close to plain convolutions), and the final ×8 upsampling is
    a bilinear resize (``upscore8`` stays in the ``state_dict``, unused). H and W must be
    multiples of 32.

    Args: as :class:`FCN8sBase`.
    """

    pac = True

    def _final(self, s: Tensor, x: Tensor) -> Tensor:
        return F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------
# backbone weights from a file or URL

_VGG_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _vgg_to_fcn(sd: dict[str, Tensor], model: FCN8sBase) -> dict[str, Tensor]:
    """torchvision VGG-16 keys (``features.<i>``, ``classifier.{0,3}``) → FCN trunk keys."""
    names = [n for block in _BLOCKS for n in block]
    out: dict[str, Tensor] = {}
    for name, i in zip(names, _VGG_CONV_INDEX):
        for p in ("weight", "bias"):
            key = f"features.{i}.{p}"
            if key not in sd:
                raise ValueError(f"VGG-16 state_dict lacks {key!r} (expected torchvision's vgg16 "
                                 "layout; vgg16_bn is not supported)")
            out[f"{name}.{p}"] = sd[key]
    own = model.state_dict()
    for fc, idx in (("fc6", 0), ("fc7", 3)):
        w, b = sd.get(f"classifier.{idx}.weight"), sd.get(f"classifier.{idx}.bias")
        if w is None or b is None:
            raise ValueError(f"VGG-16 state_dict lacks classifier.{idx}.weight/bias")
        shape = own[f"{fc}.weight"].shape
        if w.numel() != shape.numel():
            raise ValueError(f"VGG-16 classifier.{idx}.weight {tuple(w.shape)} cannot become "
                             f"{fc}.weight {tuple(shape)}")
        out[f"{fc}.weight"] = w.reshape(shape)
        out[f"{fc}.bias"] = b
    return out


def load_backbone_weights(model: nn.Module, source: Union[str, Path], *,
                          sha256: Optional[str] = None, progress: bool = True) -> str:
    """Load ImageNet VGG-16 or FCN-8s weights into an FCN-8s backbone.

    Files are read with :func:`pac_models.weights.load_checkpoint` (``weights_only``, never
    unrestricted pickle); URLs are fetched once into the torch hub cache.

    Two layouts are recognised:

    * **FCN-8s** (pacnet's / pytorch-fcn's ``fcn8s_from_caffe.pth``: ``conv1_1.weight`` …,
      optionally under ``backbone.`` or ``module.``): loaded strictly, every key.
    * **VGG-16**, torchvision's layout (``features.<i>.*``, ``classifier.{0,3}.*``): the 13
      convolutions and ``fc6``/``fc7`` (the classifier's first two layers reshaped to 7×7 and 1×1
      convolutions); ``classifier.6`` (the ImageNet classes) and the score/upsampling layers
      are not touched.

    Args:
        model: An :class:`FCN8sBase`, or a model with one as ``model.backbone``.
        source: Local path or URL (``http(s)://``, ``file://``).
        sha256: Optional expected hex digest of the file (checked before it is read).
        progress: Download progress bar.

    Returns:
        ``'fcn8s'`` or ``'vgg16'``: the layout found.

    Raises:
        ValueError: sha256 mismatch, an unknown layout, missing keys or wrong shapes.
        FileNotFoundError: a path that does not exist.
        TypeError: ``model`` has no FCN-8s backbone.
    """
    target = model if isinstance(model, FCN8sBase) else getattr(model, "backbone", None)
    if not isinstance(target, FCN8sBase):
        raise TypeError(f"model must be an FCN-8s backbone or hold one as .backbone, got "
                        f"{type(model).__name__}")
    src = str(source)
    if _w.is_url(src):
        path = _w.download(src, sha256=sha256, progress=progress)
    else:
        path = Path(src).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"backbone_weights={src!r}: no such file")
        if sha256 is not None:
            got = _w.sha256sum(path)
            if got != sha256.lower():
                raise ValueError(f"sha256 mismatch for {path}: expected {sha256}, got {got}")
    obj = _w.load_checkpoint(path)
    sd = _w.map_legacy_keys(obj, target.state_dict().keys())
    if any(k.startswith("features.") for k in sd) and "conv1_1.weight" not in sd:
        mapped = _vgg_to_fcn(sd, target)
        own = target.state_dict()
        bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
               for k, v in mapped.items() if v.shape != own[k].shape]
        if bad:
            raise ValueError(f"VGG-16 weights {src} do not fit {type(target).__name__}: "
                             f"shape mismatches {bad}")
        with torch.no_grad():
            for k, v in mapped.items():
                own[k].copy_(v)
        return "vgg16"
    if "conv1_1.weight" not in sd:
        raise ValueError(f"backbone weights {src}: neither an FCN-8s state_dict (conv1_1.weight "
                         "…) nor torchvision's VGG-16 (features.0.weight …); keys start "
                         f"{sorted(sd)[:5]}")
    _w.load_into(target, sd, src)
    return "fcn8s"
