"""Training loop for joint-upsampling models (docs/semantics.md §A.7), with progress bars,
snapshots and resume.

Per epoch: one shuffled pass over the training set (order from ``torch.Generator`` seeded with
``(seed, epoch)``), Adam on the ``'l2'`` loss in the normalised domain, the learning rate of
:func:`lr_at`. Every ``snapshot_every`` epochs and at the end, ``out/weights_epoch_<N>.pth`` (a
plain state_dict, pacnet's layout) and ``out/checkpoint_epoch_<N>.pth`` (model, optimiser,
epoch, torch RNG state, arguments; all loadable with ``torch.load(weights_only=True)``) are
written; with ``resume=True`` training continues from the newest checkpoint in ``out`` (model,
optimiser, epoch, step and random states).

Under ``torchrun`` the model trains data-parallel (see :mod:`pac_models.distributed`):
``batch_size`` is the global batch, split evenly across the processes, which together see the
batches one process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..training import (
    TrainResult,
    latest_checkpoint,
    lr_at,
    prepare,
    run_epochs,
    save_checkpoint,
    scaled_param_groups,
)
from .evaluate import _model_device, collate, evaluate, to_device
from .protocol import l2_loss

__all__ = ["TrainConfig", "TrainResult", "latest_checkpoint", "lr_at", "train"]


@dataclass
class TrainConfig:
    """Training settings (defaults: pacnet's README recipe, except the epoch count).

    Attributes:
        epochs: Number of epochs (pacnet: 5000 over NYU's 1000 images).
        lr: Adam learning rate.
        milestones: Epochs (1-based) from which the learning rate is multiplied by ``gamma``.
        gamma: Decay factor.
        batch_size: Samples per step (pacnet: 1); in a data-parallel run the global batch, a
            multiple of the world size.
        seed: Seed for initialisation, shuffling and augmentation (pacnet: 1).
        snapshot_every: Epochs between snapshots (always one at the end).
        eval_every: Epochs between evaluations on the eval set (0 = never).
        max_steps_per_epoch: Cap on optimiser steps per epoch (smoke tests; None = full pass).
        num_workers: DataLoader workers.
        lr_scales: ``(pattern, scale)`` pairs: parameters whose name matches the fnmatch
            ``pattern`` (the first that matches) train at ``scale`` times the scheduled rate
            (see :func:`~pac_models.training.scaled_param_groups`), e.g. ``(("up_convts.*",
            10.0),)`` for kernel taps that start at zero and should grow fast.
    """

    epochs: int = 1
    lr: float = 1e-4
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    batch_size: int = 1
    seed: int = 1
    snapshot_every: int = 100
    eval_every: int = 10
    max_steps_per_epoch: Optional[int] = None
    num_workers: int = 0
    lr_scales: Sequence[tuple[str, float]] = ()



def train(model: nn.Module, dataset: torch.utils.data.Dataset, factor: int,
          out: Union[str, Path], config: Optional[TrainConfig] = None, *,
          eval_dataset: Optional[torch.utils.data.Dataset] = None, eval_metric: str = "rmse",
          resume: bool = True, progress: bool = True,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` on ``dataset`` (items: unbatched :class:`~pac_models.data.JointSample`).

    Args:
        model: The model, on the device to train on (its initial weights should come from
            ``torch.manual_seed(seed)``; see the CLI, which seeds before building it).
        dataset: Training samples of equal size (use a crop); its ``epoch`` attribute, if any, is
            set before each epoch so augmentations differ per epoch yet stay reproducible.
        factor: Upsampling factor.
        out: Folder for snapshots (created).
        config: Settings.
        eval_dataset: Optional evaluation set (every ``eval_every`` epochs and at the end).
        eval_metric: ``"rmse"`` or ``"epe"``.
        resume: Continue from the newest checkpoint in ``out``.
        progress: tqdm progress bars (rank 0 only).
        log: Where to write one-line messages.

    Returns:
        The epoch range run, losses, evaluations and the final weights path.

    Raises:
        ValueError: in a data-parallel run, a batch size that is not a multiple of the world
            size.
    """

    cfg = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(scaled_param_groups(model, cfg.lr, cfg.lr_scales), lr=cfg.lr,
                           betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    net, result = prepare(model, opt, out, seed=cfg.seed, batch_size=cfg.batch_size,
                          resume=resume, log=log)

    def snapshot(epoch: int, extra: dict[str, Any]) -> Path:
        weights = out / f"weights_epoch_{epoch}.pth"
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
        save_checkpoint(out, epoch, model, opt, asdict(cfg), factor=factor, **extra)
        return weights

    def step(batch: Any) -> tuple[torch.Tensor, int]:
        batch = to_device(batch, device)
        pred = net(batch.low, batch.guide)
        if pred.shape[-2:] != batch.target.shape[-2:]:
            from .protocol import center_crop

            pred = center_crop(pred, tuple(batch.target.shape[-2:]))
        return l2_loss(pred, batch.target, batch.raw_range), batch.low.shape[0]

    def run_eval() -> tuple[float, str]:
        ctx = distributed.context()
        if not ctx.distributed:
            ev = evaluate(model, eval_dataset, factor, eval_metric)
            return ev.value, f", eval {eval_metric} {ev.value:.5g} ({ev.count} images)"
        # every process scores every world_size-th image; the mean of all per-image values
        n, w = len(eval_dataset), ctx.world_size
        mine = evaluate(model, torch.utils.data.Subset(eval_dataset, range(ctx.rank, n, w)),
                        factor, eval_metric)
        shards = distributed.gather_objects(mine.per_image, ctx)
        values = [shards[i % w][i // w] for i in range(n)]
        value = float(np.mean(values)) if values else float("nan")
        return value, f", eval {eval_metric} {value:.5g} ({n} images)"

    device = _model_device(model)
    return run_epochs(net, opt, dataset, cfg, result, out, collate=collate, step=step,
                      snapshot=snapshot, evaluate=run_eval if eval_dataset is not None else None,
                      progress=progress, log=log)
