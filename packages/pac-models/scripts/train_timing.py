"""Time training steps of the joint-upsampling models (for sizing a training run).

Usage: ``python train_timing.py [--device cuda] [--crop 256] [--batch 8] [--steps 10]``. Prints
seconds per optimiser step (after two warm-up steps) for each model and factor, with synthetic
scenes generated on the fly excluded (the data cost is printed separately).
"""

from __future__ import annotations

import argparse
import time

import torch

from pac_models import create_model
from pac_models.data import AssembleJointUpsamplingInputs, SyntheticScenes
from pac_models.depth.evaluate import collate


def main() -> None:
    """Print the timing table."""
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--models", nargs="+", default=["pac_joint_upsample", "pac_joint_upsample_lite",
                                                   "djif"])
    a = p.parse_args()
    dev = torch.device(a.device)
    ds = SyntheticScenes(a.batch, (a.crop, a.crop), factor=8,
                         transform=AssembleJointUpsamplingInputs(8, crop=a.crop))
    t0 = time.perf_counter()
    batch = collate([ds[i] for i in range(a.batch)])
    print(f"data: {(time.perf_counter() - t0) / a.batch:.3f} s per {a.crop}² scene (CPU)")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for name in a.models:
        for f in (4, 8, 16):
            m = create_model(name, factor=f).to(dev)
            opt = torch.optim.Adam(m.parameters(), 1e-4)
            c = a.crop // f
            low = batch.low[..., :c, :c].contiguous().to(dev) if f == 8 else \
                torch.rand(a.batch, 1, c, c, device=dev)
            guide, target = batch.guide.to(dev), batch.target.to(dev)
            for i in range(a.steps + 2):
                if i == 2:
                    sync()
                    t0 = time.perf_counter()
                opt.zero_grad()
                loss = (m(low, guide) - target).square().mean()
                loss.backward()
                opt.step()
            sync()
            dt = (time.perf_counter() - t0) / a.steps
            print(f"{name:26s} x{f:<3d} batch {a.batch} crop {a.crop}: {dt * 1000:8.1f} ms/step",
                  flush=True)


if __name__ == "__main__":
    main()
