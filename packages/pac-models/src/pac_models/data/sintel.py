"""MPI Sintel optical flow reader for joint flow upsampling (docs/semantics.md §A.5), and ``.flo``
files.

pac-models does not download Sintel (``MPI-Sintel-complete.zip``, md5 :data:`SINTEL_MD5`, from
:data:`SINTEL_URL`); unpack it and pass the folder holding ``training/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
from torch.utils.data import Dataset

from .joint import AssembleJointUpsamplingInputs, JointSample

__all__ = [
    "FLO_MAGIC",
    "SINTEL_URL",
    "SINTEL_VAL_RULE",
    "SintelFlow",
    "read_flo",
    "sintel_split_labels",
    "write_flo",
]

SINTEL_URL = "http://files.is.tue.mpg.de/sintel/MPI-Sintel-complete.zip"
SINTEL_MD5 = "2d2836c2c6b4fb6c9d2d2d58189eb014"
FLO_MAGIC = 202021.25
"""First float32 of a Middlebury ``.flo`` file (the bytes ``PIEH``)."""
PASSES = ("clean", "final", "albedo")

SINTEL_VAL_RULE: dict[str, Optional[int]] = {
    "ambush_6": None, "bamboo_2": 25, "cave_4": 25, "market_6": None, "temple_2": 25,
}
"""Validation pairs of the FlyingChairs train/val split: all pairs (None) or the last N per sequence
(133 pairs in total; every other pair trains, 908)."""


def read_flo(path: Union[str, Path]) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Format (little-endian): float32 magic 202021.25, int32 width, int32 height, then
    ``height × width × 2`` float32 (u, v interleaved, row-major).

    Returns:
        ``float32 [H, W, 2]``.

    Raises:
        ValueError: wrong magic, implausible size, or truncated data.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12:
            raise ValueError(f"{path}: too short for a .flo header")
        magic = np.frombuffer(head[:4], "<f4")[0]
        if magic != np.float32(FLO_MAGIC):
            raise ValueError(f"{path}: not a .flo file (magic {magic!r}, expected {FLO_MAGIC})")
        w, h = (int(v) for v in np.frombuffer(head[4:12], "<i4"))
        if not (0 < w < 1 << 16 and 0 < h < 1 << 16):
            raise ValueError(f"{path}: implausible .flo size {w}×{h}")
        data = np.frombuffer(fh.read(), "<f4")
    if data.size != h * w * 2:
        raise ValueError(f"{path}: expected {h * w * 2} floats for {w}×{h}, found {data.size}")
    return data.reshape(h, w, 2).astype(np.float32)


def write_flo(path: Union[str, Path], flow: np.ndarray) -> None:
    """Write ``flow [H, W, 2]`` as a Middlebury ``.flo`` file.

    Raises:
        ValueError: not ``[H, W, 2]``.
    """
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2], got {flow.shape}")
    h, w = flow.shape[:2]
    with open(path, "wb") as fh:
        fh.write(np.array([FLO_MAGIC], "<f4").tobytes())
        fh.write(np.array([w, h], "<i4").tobytes())
        fh.write(np.ascontiguousarray(flow).tobytes())


def sintel_split_labels(pairs: Sequence[tuple[str, int]]) -> list[int]:
    """Train (1) / val (2) label of each ``(sequence, index)`` pair by :data:`SINTEL_VAL_RULE`.

    Args:
        pairs: ``(sequence name, pair index within the sequence)`` in sorted order.

    Returns:
        One label per pair, the format of the published ``Sintel_train_val.txt``.
    """
    counts: dict[str, int] = {}
    for seq, _ in pairs:
        counts[seq] = counts.get(seq, 0) + 1
    labels = []
    for seq, idx in pairs:
        if seq in SINTEL_VAL_RULE:
            last = SINTEL_VAL_RULE[seq]
            val = last is None or idx >= counts[seq] - last
            labels.append(2 if val else 1)
        else:
            labels.append(1)
    return labels


class SintelFlow(Dataset):
    """Sintel training pairs: guidance = first frame, target = flow ``(u, v)``.

    Layout under ``root``: ``training/<pass>/<seq>/*.png`` and ``training/flow/<seq>/*.flo``; pair
    i of a sequence is its i-th frame (sorted) with its i-th flow file.

    Args:
        root: Folder containing ``training/``.
        split: ``'train'`` (908 pairs), ``'val'`` (133) or ``'all'``.
        factor: Upsampling factor (used by the default transform).
        pass_name: ``'clean'`` (default), ``'final'`` or ``'albedo'``; the dataset names
            ``Sintel``/``Sintel-clean``/``Sintel-final``/``Sintel-albedo`` are accepted too.
        split_file: Optional ``Sintel_train_val.txt`` (one 1/2 label per pair, sorted order);
            default: :func:`sintel_split_labels`.
        transform: Sample assembly; None = evaluation protocol (``'bilinear'`` low-resolution,
            no border, no crop or flip).
        seed: Seed of the per-item random generators (see :class:`~pac_models.data.NYUDepthV2`).

    Raises:
        FileNotFoundError: no flow files under ``root``.
        ValueError: unknown pass or split, a split file of the wrong length, or a sequence with
            fewer frames than flow files.
    """

    def __init__(self, root: Union[str, Path], split: str = "val", factor: int = 8,
                 pass_name: str = "clean", split_file: Optional[Union[str, Path]] = None,
                 transform: Optional[AssembleJointUpsamplingInputs] = None, seed: int = 0) -> None:
        pass_name = pass_name.lower()
        if pass_name.startswith("sintel"):
            pass_name = pass_name.split("-", 1)[1] if "-" in pass_name else "clean"
        if pass_name not in PASSES:
            raise ValueError(f"pass must be one of {PASSES}, got {pass_name!r}")
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.root = Path(root)
        flow_root = self.root / "training" / "flow"
        seqs = sorted(p.name for p in flow_root.iterdir() if p.is_dir()) if flow_root.is_dir() \
            else []
        if not seqs:
            raise FileNotFoundError(f"no Sintel flow sequences under {flow_root}")
        items: list[tuple[Path, Path]] = []
        keys: list[tuple[str, int]] = []
        for seq in seqs:
            flows = sorted((flow_root / seq).glob("*.flo"))
            frames = sorted((self.root / "training" / pass_name / seq).glob("*.png"))
            if len(frames) < len(flows):
                raise ValueError(
                    f"sequence {seq}: {len(flows)} flow files but {len(frames)} {pass_name} frames"
                )
            for i, fl in enumerate(flows):
                items.append((frames[i], fl))
                keys.append((seq, i))
        if split_file is not None:
            labels = [int(x) for x in Path(split_file).read_text().split()]
            if len(labels) != len(items):
                raise ValueError(
                    f"split file {split_file} has {len(labels)} labels for {len(items)} pairs"
                )
        else:
            labels = sintel_split_labels(keys)
        want = {"train": (1,), "val": (2,), "all": (1, 2)}[split]
        self.items = [it for it, lab in zip(items, labels) if lab in want]
        self.keys = [k for k, lab in zip(keys, labels) if lab in want]
        self.split = split
        self.factor = factor
        self.pass_name = pass_name
        self.transform = transform or AssembleJointUpsamplingInputs(
            factor, crop=None, flip=False, output_crop=0, lowres_mode="bilinear")
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rgb uint8 [3, H, W], flow float32 [2, H, W])`` of item ``i``."""
        import imageio.v3 as iio

        frame, flo = self.items[i]
        rgb = np.asarray(iio.imread(frame))
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[..., :3].transpose(2, 0, 1)).astype(np.uint8)
        flow = np.ascontiguousarray(read_flo(flo).transpose(2, 0, 1))
        return rgb, flow

    def __getitem__(self, i: int) -> JointSample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rgb, flow = self.raw(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return self.transform(rgb, flow, rng)
