"""PASCAL VOC 2012 + SBD readers, splits (docs/semantics.md §B.4) and the input pipeline
(docs/semantics.md §B.5).

Layouts read (as unpacked from the official archives)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png       palette PNG, indices 0–20, 255 = void
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval,test}.txt
    benchmark_RELEASE/dataset/img/<id>.jpg
    benchmark_RELEASE/dataset/cls/<id>.mat              GTcls.Segmentation (MATLAB struct)
    benchmark_RELEASE/dataset/{train,val}.txt

An image id is read from VOC when its VOC label exists, else from SBD. Each SBD ``.mat`` label is
converted once into a palette PNG ``cls_png/<id>.png`` next to ``cls/`` (when the folder is
writable; otherwise it is read from the ``.mat`` every time).

The VOC2011 lists (``train11``, ``val11``; 1112 / 1111 ids) are not part of these archives; put
``train11.txt`` and ``val11.txt`` (and optionally ``seg11valid.txt``) in ``ImageSets/Segmentation``
or in a folder passed as ``lists_dir``. ``val11_sbd`` ("seg11valid", 736 ids) is derived as
``val11 − SBD train`` when no list file is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .metrics import IGNORE_INDEX

__all__ = [
    "MEAN_RGB",
    "SPLITS",
    "VOC_CLASSES",
    "SegSample",
    "SegmentationInputs",
    "VOCSegmentation",
    "collate_segmentation",
    "convert_sbd_labels",
    "image_to_input",
    "input_to_image",
    "read_label_png",
    "read_sbd_mat",
    "split_ids",
    "voc_palette",
    "write_label_png",
]

MEAN_RGB = (122.675, 116.669, 104.008)
"""Per-channel mean (R, G, B) subtracted from the 0–255 image (B.5)."""

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
"""The 21 VOC classes, index = label."""

SPLITS = ("train", "val", "trainval", "test", "train11", "val11", "trainval11", "val11_sbd",
          "train_aug", "trainval_aug", "train11_sbd")
"""Split names; each also takes a ``_rand<N>`` suffix (N random ids, drawn anew every epoch)."""

PathLike = Union[str, Path]


def voc_palette() -> list[int]:
    """The 768-entry PIL palette: the standard 21 VOC colours, every other index white."""
    pal = [255] * 768
    for i in range(21):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[3 * i:3 * i + 3] = [r, g, b]
    return pal


def write_label_png(path: PathLike, label: Union[np.ndarray, Tensor]) -> None:
    """Write ``[H, W]`` class indices (0–255) as a palette PNG with :func:`voc_palette`."""
    from PIL import Image

    arr = np.asarray(label.cpu() if isinstance(label, Tensor) else label)
    if arr.ndim != 2:
        raise ValueError(f"label must be [H, W], got shape {arr.shape}")
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError("label values must lie in [0, 255]")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def read_label_png(path: PathLike) -> np.ndarray:
    """Class indices ``[H, W]`` uint8 of a palette (or grayscale) label PNG.

    Raises:
        ValueError: an RGB image (colours, not indices).
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette or grayscale label PNG, got mode "
                             f"{img.mode!r}")
        return np.array(img, dtype=np.uint8)


def read_sbd_mat(path: PathLike) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` as ``[H, W]`` uint8.

    Raises:
        ValueError: the file has no ``GTcls.Segmentation``.
    """
    from scipy.io import loadmat

    mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    gt = mat.get("GTcls")
    seg = getattr(gt, "Segmentation", None)
    if seg is None:
        raise ValueError(f"{path}: no GTcls.Segmentation field (not an SBD cls .mat)")
    return np.asarray(seg).astype(np.uint8)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)


def _read_list(path: Path) -> list[str]:
    return [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]


def _find_voc(root: PathLike) -> Path:
    root = Path(root).expanduser()
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise FileNotFoundError(f"no VOC2012 folder (with JPEGImages/) at or below {root}")


def _find_sbd(root: PathLike) -> Path:
    root = Path(root).expanduser()
    for cand in (root, root / "dataset", root / "benchmark_RELEASE" / "dataset"):
        if (cand / "cls").is_dir() or (cand / "cls_png").is_dir():
            return cand
    raise FileNotFoundError(f"no SBD dataset folder (with cls/) at or below {root}")


def convert_sbd_labels(sbd_root: PathLike, ids: Optional[Sequence[str]] = None) -> int:
    """Write every SBD ``cls/<id>.mat`` as ``cls_png/<id>.png`` (once; existing PNGs are kept).

    Returns:
        The number of PNGs written.
    """
    root = _find_sbd(sbd_root)
    ids = list(ids) if ids is not None else sorted(p.stem for p in (root / "cls").glob("*.mat"))
    n = 0
    for i in ids:
        dst = root / "cls_png" / f"{i}.png"
        if not dst.exists():
            write_label_png(dst, read_sbd_mat(root / "cls" / f"{i}.mat"))
            n += 1
    return n


def _base_and_rand(split: str) -> tuple[str, Optional[int]]:
    base, sep, n = split.partition("_rand")
    if not sep:
        return split, None
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"split {split!r}: the _rand suffix needs a positive count, got {n!r}")
    return base, int(n)


def split_ids(split: str, voc_root: PathLike, sbd_root: Optional[PathLike] = None,
              lists_dir: Optional[PathLike] = None) -> list[str]:
    """The sorted image ids of a split (without a ``_rand<N>`` suffix's sampling).

    Args:
        split: One of :data:`SPLITS` (a ``_rand<N>`` suffix is stripped).
        voc_root: ``VOCdevkit/VOC2012`` (or a folder above it).
        sbd_root: ``benchmark_RELEASE/dataset`` (or above); needed by the SBD-based splits.
        lists_dir: Extra folder searched first for ``<split>.txt`` (the VOC2011 lists).

    Raises:
        ValueError: unknown split, or a split that needs SBD without ``sbd_root``.
        FileNotFoundError: a needed list file is missing.
    """
    base, _ = _base_and_rand(split)
    if base not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)} "
                         "(each optionally + '_rand<N>')")
    voc = _find_voc(voc_root)
    dirs = ([Path(lists_dir).expanduser()] if lists_dir is not None else []) + [
        voc / "ImageSets" / "Segmentation"]

    def lst(name: str, *alts: str) -> set[str]:
        for d in dirs:
            for n in (name, *alts):
                if (d / f"{n}.txt").is_file():
                    return set(_read_list(d / f"{n}.txt"))
        raise FileNotFoundError(f"split list {name}.txt not found in {[str(d) for d in dirs]}")

    def sbd(name: str) -> set[str]:
        if sbd_root is None:
            raise ValueError(f"split {split!r} needs SBD: pass sbd_root (benchmark_RELEASE/"
                             "dataset)")
        return set(_read_list(_find_sbd(sbd_root) / f"{name}.txt"))

    if base in ("train", "val", "trainval", "test"):
        ids = lst(base)
    elif base in ("train11", "val11"):
        ids = lst(base)
    elif base == "trainval11":
        ids = lst("train11") | lst("val11")
    elif base == "val11_sbd":
        try:
            ids = lst("val11_sbd", "seg11valid")
        except FileNotFoundError:
            ids = lst("val11") - sbd("train")
    elif base == "train11_sbd":
        ids = lst("train11") | sbd("train")
    elif base == "train_aug":
        ids = (lst("train") | sbd("train") | sbd("val")) - lst("val")
    else:  # trainval_aug
        ids = ((lst("train") | sbd("train") | sbd("val")) - lst("val")) | lst("val")
    return sorted(ids)


# ---------------------------------------------------------------------------------------------
# the input pipeline (B.5)

def image_to_input(rgb: Union[np.ndarray, Tensor]) -> Tensor:
    """``(H, W, 3)`` uint8 RGB → the network input ``[3, H, W]`` float32: mean-subtracted (0–255
    scale), channels in **BGR** order."""
    arr = np.asarray(rgb.cpu() if isinstance(rgb, Tensor) else rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {arr.shape}")
    x = arr.astype(np.float32) - np.asarray(MEAN_RGB, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[::-1]))


def input_to_image(x: Tensor) -> np.ndarray:
    """Inverse of :func:`image_to_input`: ``[3, H, W]`` → ``(H, W, 3)`` uint8 RGB (clipped)."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"x must be [3, H, W], got shape {tuple(x.shape)}")
    rgb = x.detach().cpu().numpy()[::-1].transpose(1, 2, 0) + np.asarray(MEAN_RGB, np.float32)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


@dataclass
class SegSample:
    """One (possibly batched) segmentation sample.

    Attributes:
        image: ``[3, S, S]`` (or ``[B, 3, S, S]``) network input (:func:`image_to_input`).
        label: ``[h, w]`` (or ``[B, h, w]``) int64 labels, 255 = void. The model is called as
            ``model(image, label.shape[-2:])``.
        id: Image id (or a list of ids).
    """

    image: Tensor
    label: Tensor
    id: Any


def _jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation ±0.1 and hue ±0.01 (fractions of a turn)."""
    from skimage.color import hsv2rgb, rgb2hsv

    x = rgb.astype(np.float32) / 255.0
    x = x * rng.uniform(0.9, 1.1)
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - gray.mean()) * rng.uniform(0.9, 1.1) + gray.mean()
    gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    x = np.clip((x - gray) * rng.uniform(0.9, 1.1) + gray, 0, 1)
    hsv = rgb2hsv(x)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.01, 0.01)) % 1.0
    return np.clip(np.round(hsv2rgb(hsv) * 255), 0, 255).astype(np.uint8)


class SegmentationInputs:
    """The B.5 pipeline (pacnet's ``DeepLabInputs``): image and label arrays → :class:`SegSample`.

    Training (``train=True``): optional random scale ``U[1−s, 1+s]`` (bilinear image, nearest
    label), optional colour jitter, horizontal flip with p = 0.5, then a random ``S×S`` crop:
    offsets uniform in ``[0, max(0, H−S)]``, the valid part copied to the top-left of a zero
    input (zero = the mean colour) and the label padded with 255.

    Test (``train=False``): ``crop ≤ 0`` keeps the full image; ``crop = S`` places the image
    top-left in an ``S×S`` zero canvas (e.g. 512 for the PAC-FCN models, whose input must be a
    multiple of 32) and cuts the label to the valid part (not padded).

    Args:
        crop: ``S`` (≤ 0: no crop). pacnet: 449 for training, 512 (or −1) for testing.
        train: Training (random) or test (deterministic) behaviour.
        flip: Random horizontal flips (training only).
        scale: ``s`` of the random scale (0: off).
        jitter: Colour jitter (training only).
    """

    def __init__(self, crop: int = 449, train: bool = True, *, flip: bool = True,
                 scale: float = 0.0, jitter: bool = False) -> None:
        if isinstance(crop, bool) or not isinstance(crop, int):
            raise TypeError(f"crop must be an int, got {crop!r}")
        if not 0.0 <= scale < 1.0:
            raise ValueError(f"scale must lie in [0, 1), got {scale!r}")
        self.crop, self.train, self.flip = crop, train, flip
        self.scale, self.jitter = float(scale), jitter

    def __call__(self, rgb: np.ndarray, label: np.ndarray,
                 rng: Optional[np.random.Generator] = None) -> tuple[Tensor, Tensor]:
        """Returns ``(image [3, S, S] or [3, H, W], label int64)``.

        Raises:
            ValueError: image and label sizes differ.
        """
        if rgb.shape[:2] != label.shape[:2]:
            raise ValueError(f"image {rgb.shape[:2]} and label {label.shape[:2]} sizes differ")
        rng = rng if rng is not None else np.random.default_rng()
        if self.train:
            if self.scale > 0:
                rgb, label = self._rescale(rgb, label, rng.uniform(1 - self.scale,
                                                                   1 + self.scale))
            if self.jitter:
                rgb = _jitter(rgb, rng)
            if self.flip and rng.random() < 0.5:
                rgb, label = rgb[:, ::-1], label[:, ::-1]
        x = image_to_input(rgb)
        lab = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        s = self.crop
        if s <= 0:
            return x, lab
        h, w = lab.shape
        if self.train:
            oy = int(rng.integers(0, max(0, h - s) + 1))
            ox = int(rng.integers(0, max(0, w - s) + 1))
        else:
            oy = ox = 0
        vh, vw = min(h, s), min(w, s)
        canvas = x.new_zeros(3, s, s)
        canvas[:, :vh, :vw] = x[:, oy:oy + vh, ox:ox + vw]
        lab = lab[oy:oy + vh, ox:ox + vw]
        if self.train:
            padded = torch.full((s, s), IGNORE_INDEX, dtype=torch.int64)
            padded[:vh, :vw] = lab
            lab = padded
        return canvas, lab

    @staticmethod
    def _rescale(rgb: np.ndarray, label: np.ndarray,
                 f: float) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        h, w = label.shape
        size = (max(1, round(w * f)), max(1, round(h * f)))
        img = Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.BILINEAR)
        lab = Image.fromarray(np.ascontiguousarray(label).astype(np.uint8)).resize(
            size, Image.NEAREST)
        return np.asarray(img), np.asarray(lab)

    def __repr__(self) -> str:
        return (f"SegmentationInputs(crop={self.crop}, train={self.train}, flip={self.flip}, "
                f"scale={self.scale}, jitter={self.jitter})")


def collate_segmentation(samples: Sequence[SegSample]) -> SegSample:
    """Stack samples of equal size into a batch (a ``DataLoader`` ``collate_fn``).

    Raises:
        ValueError: the samples differ in size (use a training crop, or batch size 1 to test).
    """
    shapes = {(tuple(s.image.shape), tuple(s.label.shape)) for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"cannot batch samples of different sizes {sorted(shapes)}; use a "
                         "training crop or batch size 1")
    return SegSample(torch.stack([s.image for s in samples]),
                     torch.stack([s.label for s in samples]), [s.id for s in samples])


class VOCSegmentation(torch.utils.data.Dataset):
    """PASCAL VOC 2012 (+ SBD) semantic segmentation.

    Args:
        voc_root: ``VOCdevkit/VOC2012`` (or a folder above it).
        split: One of :data:`SPLITS`, optionally with ``_rand<N>``.
        sbd_root: ``benchmark_RELEASE/dataset`` (or above); needed by the ``*_aug``/``*_sbd``
            splits and by ids without a VOC label.
        transform: Callable ``(rgb, label, rng) → (image, label)``, default
            ``SegmentationInputs(crop=-1, train=False)`` (full image, no augmentation).
        seed: Seed of the augmentations and of ``_rand`` draws (together with :attr:`epoch`).
        lists_dir: Folder with extra split lists (``train11.txt``, ``val11.txt``, …).
        cache_sbd_png: Write each SBD ``.mat`` label as ``cls_png/<id>.png`` on first use.

    Attributes:
        ids: The split's ids (sorted).
        epoch: Set by the training loop; augmentations and ``_rand`` draws depend on it.

    Items are :class:`SegSample`; ids without any label (the VOC test set) get an all-255
    label.
    """

    def __init__(self, voc_root: PathLike, split: str = "val",
                 sbd_root: Optional[PathLike] = None,
                 transform: Optional[Callable[..., tuple[Tensor, Tensor]]] = None,
                 seed: int = 0, lists_dir: Optional[PathLike] = None,
                 cache_sbd_png: bool = True) -> None:
        self.voc = _find_voc(voc_root)
        self.sbd = _find_sbd(sbd_root) if sbd_root is not None else None
        self.split = split
        self.ids = split_ids(split, self.voc, self.sbd, lists_dir)
        self.rand_n = _base_and_rand(split)[1]
        if self.rand_n is not None and self.rand_n > len(self.ids):
            raise ValueError(f"split {split!r}: asks for {self.rand_n} random ids of "
                             f"{len(self.ids)}")
        self.transform = transform or SegmentationInputs(crop=-1, train=False)
        self.seed = seed
        self.epoch = 0
        self.cache_sbd_png = cache_sbd_png

    def _epoch_ids(self) -> list[str]:
        if self.rand_n is None:
            return self.ids
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        pick = rng.choice(len(self.ids), self.rand_n, replace=False)
        return [self.ids[i] for i in sorted(pick)]

    def __len__(self) -> int:
        return len(self.ids) if self.rand_n is None else self.rand_n

    def paths(self, image_id: str) -> tuple[Path, Optional[Path]]:
        """``(image path, label path or None)`` of an id (VOC when its label exists, else SBD).

        Raises:
            FileNotFoundError: the image is in neither dataset.
        """
        voc_label = self.voc / "SegmentationClass" / f"{image_id}.png"
        if voc_label.is_file():
            return self.voc / "JPEGImages" / f"{image_id}.jpg", voc_label
        if self.sbd is not None:
            png = self.sbd / "cls_png" / f"{image_id}.png"
            mat = self.sbd / "cls" / f"{image_id}.mat"
            img = self.sbd / "img" / f"{image_id}.jpg"
            if png.is_file():
                return img, png
            if mat.is_file():
                return img, mat
        img = self.voc / "JPEGImages" / f"{image_id}.jpg"
        if img.is_file():
            return img, None
        raise FileNotFoundError(f"image {image_id!r} is neither in {self.voc} nor in SBD "
                                f"({self.sbd})")

    def read(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``(rgb (H, W, 3) uint8, label (H, W) uint8)`` of an id."""
        img_path, lab_path = self.paths(image_id)
        rgb = _read_rgb(img_path)
        if lab_path is None:
            label = np.full(rgb.shape[:2], IGNORE_INDEX, np.uint8)
        elif lab_path.suffix == ".mat":
            label = read_sbd_mat(lab_path)
            if self.cache_sbd_png:
                dst = lab_path.parent.parent / "cls_png" / f"{image_id}.png"
                try:
                    tmp = dst.with_suffix(f".tmp{os.getpid()}.png")
                    write_label_png(tmp, label)
                    os.replace(tmp, dst)
                except OSError:
                    pass  # read-only dataset: keep reading the .mat
        else:
            label = read_label_png(lab_path)
        if label.shape != rgb.shape[:2]:
            raise ValueError(f"{image_id}: image {rgb.shape[:2]} and label {label.shape} sizes "
                             "differ")
        return rgb, label

    def __getitem__(self, index: int) -> SegSample:
        image_id = self._epoch_ids()[index]
        rgb, label = self.read(image_id)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, lab = self.transform(rgb, label, rng)
        return SegSample(image, lab, image_id)
