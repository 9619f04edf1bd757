"""Helpers shared by the training loops (depth and segmentation): the learning-rate schedule and
checkpoint files for resuming."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch

__all__ = ["TrainResult", "jsonable", "latest_checkpoint", "lr_at", "to_cpu"]


@dataclass
class TrainResult:
    """What a training loop did (depth and segmentation).

    Attributes:
        start_epoch: First epoch run (1-based; > 1 after a resume).
        epochs: Last epoch reached.
        losses: Mean training loss of each epoch run.
        evals: ``{epoch: metric}`` of the evaluations (RMSE/EPE for depth/flow, mIoU for
            segmentation).
        weights: Path of the final plain state_dict.
    """

    start_epoch: int
    epochs: int
    losses: list[float] = field(default_factory=list)
    evals: dict[int, float] = field(default_factory=dict)
    weights: Optional[Path] = None


def lr_at(epoch: int, lr: float, milestones: Sequence[int], gamma: float) -> float:
    """Learning rate of 1-based ``epoch``: ``lr · gamma^(number of milestones ≤ epoch)``.

    With milestones (3500, 4500) this gives 1e-4 for epochs 1–3499, 1e-5 for 3500–4499 and 1e-6
    from 4500 on, the values pacnet's pre-1.1 ``scheduler.step()``-first loop produced.
    """
    return lr * gamma ** sum(epoch >= m for m in milestones)


_CKPT = re.compile(r"checkpoint_epoch_(\d+)\.pth$")


def latest_checkpoint(out: Union[str, Path]) -> Optional[tuple[int, Path]]:
    """``(epoch, path)`` of the newest ``checkpoint_epoch_<N>.pth`` in ``out``, or None."""
    best: Optional[tuple[int, Path]] = None
    for p in Path(out).glob("checkpoint_epoch_*.pth"):
        m = _CKPT.search(p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best


def to_cpu(obj: Any) -> Any:
    """Detached CPU copies of the tensors in nested dicts/lists/tuples (for checkpoints that
    resume on any device)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every value made JSON-serialisable (``str()`` of unknown objects)."""
    return json.loads(json.dumps(d, default=str))
