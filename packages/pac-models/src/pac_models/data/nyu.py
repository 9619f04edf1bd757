"""NYU Depth V2 (labelled subset) reader for joint depth upsampling (docs/semantics.md §A.5).

The file ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5, 2.8 GB, md5
``a3a66613390119e6d46827a7aaa3c132``) is not downloaded by pac-models; fetch it from
:data:`NYU_URL` and pass its path. Its ``images`` (``N×3×640×480`` uint8) and ``depths``
(``N×640×480`` float32, metres) are stored column-major, so each frame is transposed on its last two
axes to ``H×W = 480×640``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from torch.utils.data import Dataset

from .joint import AssembleJointUpsamplingInputs, JointSample

__all__ = ["NYU_BORDER", "NYU_MD5", "NYU_TRAIN_SIZE", "NYU_URL", "NYUDepthV2", "nyu_indices"]

NYU_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
NYU_MD5 = "a3a66613390119e6d46827a7aaa3c132"
NYU_TRAIN_SIZE = 1000
"""Samples ``0…999`` train, ``1000…1448`` test (DJIF split of Li et al.)."""
NYU_BORDER = 6
"""Evaluation border (pixels removed on every side before the RMSE)."""


def nyu_indices(split: str, total: int, val_ratio: float = 0.0,
                train_size: int = NYU_TRAIN_SIZE) -> list[int]:
    """Sample indices of a split.

    Args:
        split: ``'train'``, ``'val'``, ``'test'`` or ``'all'``.
        total: Number of samples in the file (1449).
        val_ratio: The last ``int(train_size·val_ratio)`` training samples form ``'val'`` and
            leave ``'train'``.
        train_size: Size of the training part (1000; smaller for test files).

    Raises:
        ValueError: unknown split, or a ``'val'`` split with ``val_ratio = 0``.
    """
    train_size = min(train_size, total)
    n_val = int(train_size * val_ratio)
    if split == "train":
        return list(range(train_size - n_val))
    if split == "val":
        if n_val == 0:
            raise ValueError("split 'val' needs val_ratio > 0")
        return list(range(train_size - n_val, train_size))
    if split == "test":
        return list(range(train_size, total))
    if split == "all":
        return list(range(total))
    raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")


class NYUDepthV2(Dataset):
    """NYU Depth V2 labelled frames as joint-upsampling samples.

    Each item is a :class:`~pac_models.data.joint.JointSample` built by ``transform`` (default:
    the evaluation protocol: ``'center'`` low-resolution sampling, 6-pixel border, no crop or
    flip) from ``(rgb uint8 [3, 480, 640], depth float32 [1, 480, 640] in metres)``.

    Args:
        path: The ``.mat`` file.
        split: ``'train'``, ``'val'``, ``'test'`` or ``'all'``.
        factor: Upsampling factor (used by the default transform).
        transform: Sample assembly; None = evaluation protocol for ``factor``.
        val_ratio: See :func:`nyu_indices`.
        train_size: See :func:`nyu_indices`.
        seed: Seed of the per-item random generators (crop/flip); item i of epoch e uses
            ``default_rng([seed, e, i])`` (set :attr:`epoch`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file lacks ``images``/``depths`` or their shapes disagree.
    """

    def __init__(self, path: Union[str, Path], split: str = "test", factor: int = 8,
                 transform: Optional[AssembleJointUpsamplingInputs] = None,
                 val_ratio: float = 0.0, train_size: int = NYU_TRAIN_SIZE, seed: int = 0) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"NYU Depth V2 file not found: {self.path} (download {NYU_URL})"
            )
        with h5py.File(self.path, "r") as f:
            for key in ("images", "depths"):
                if key not in f:
                    raise ValueError(
                        f"{self.path}: no '{key}' dataset (not the labelled NYU .mat?)"
                    )
            n_img, n_dep = f["images"].shape[0], f["depths"].shape[0]
            if n_img != n_dep or f["images"].shape[2:] != f["depths"].shape[1:]:
                raise ValueError(
                    f"{self.path}: images {f['images'].shape} and depths {f['depths'].shape} "
                    "disagree"
                )
        self.total = n_img
        self.indices = nyu_indices(split, n_img, val_ratio, train_size)
        self.split = split
        self.factor = factor
        self.transform = transform or AssembleJointUpsamplingInputs(
            factor, crop=None, flip=False, output_crop=NYU_BORDER, lowres_mode="center")
        self.seed = seed
        self.epoch = 0
        self._file: Any = None

    def __len__(self) -> int:
        return len(self.indices)

    def _h5(self) -> Any:
        if self._file is None:  # opened lazily, once per process (DataLoader workers)
            import h5py

            self._file = h5py.File(self.path, "r")
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rgb uint8 [3, H, W], depth float32 [H, W])`` of item ``i`` (metres)."""
        f = self._h5()
        j = self.indices[i]
        rgb = np.ascontiguousarray(np.asarray(f["images"][j]).transpose(0, 2, 1))
        depth = np.ascontiguousarray(np.asarray(f["depths"][j], dtype=np.float32).T)
        return rgb.astype(np.uint8), depth

    def __getitem__(self, i: int) -> JointSample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        rgb, depth = self.raw(i)
        rng = np.random.default_rng([self.seed, self.epoch, self.indices[i]])
        return self.transform(rgb, depth, rng)
