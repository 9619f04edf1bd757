"""Shared helpers: tiny NYU .mat and Sintel trees written in the real formats."""

from pathlib import Path

import numpy as np
import pytest
import torch


def write_nyu_mat(path: Path, n: int = 5, h: int = 24, w: int = 32, seed: int = 0):
    """An HDF5 file laid out like nyu_depth_v2_labeled.mat (N×3×W×H images, N×W×H depths)."""
    import h5py

    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8)
    depth = rng.uniform(0.5, 10.0, (n, h, w)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = rgb.transpose(0, 1, 3, 2)  # MATLAB column-major: stored transposed
        f["depths"] = depth.transpose(0, 2, 1)
        f["labels"] = np.zeros((n, w, h), np.uint16)
    return rgb, depth


def write_sintel(root: Path, seqs: dict, h: int = 16, w: int = 24, seed: int = 0):
    """training/{clean,final}/<seq>/frame_XXXX.png (n+1 frames) and training/flow/<seq>/*.flo."""
    import imageio.v3 as iio

    from pac_models.data import write_flo

    rng = np.random.default_rng(seed)
    flows = {}
    for seq, n in seqs.items():
        for p in ("clean", "final"):
            d = root / "training" / p / seq
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n + 1):
                iio.imwrite(d / f"frame_{i + 1:04d}.png",
                            rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        d = root / "training" / "flow" / seq
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            fl = rng.normal(0, 3, (h, w, 2)).astype(np.float32)
            write_flo(d / f"frame_{i + 1:04d}.flo", fl)
            flows[(seq, i)] = fl
    return flows


@pytest.fixture
def nyu_file(tmp_path):
    path = tmp_path / "nyu_tiny.mat"
    rgb, depth = write_nyu_mat(path)
    return path, rgb, depth


@pytest.fixture
def sintel_writer():
    return write_sintel


@pytest.fixture
def one_thread():
    """Run the test with one torch thread (restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
