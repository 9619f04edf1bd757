"""Helpers shared by the training loops (depth and segmentation): the learning-rate schedule and
checkpoint files for resuming."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

__all__ = ["TrainResult", "begin_epoch", "jsonable", "latest_checkpoint", "lr_at", "resume",
           "run_epochs", "save_checkpoint", "scaled_param_groups", "to_cpu"]


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


def resume(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
           log: Callable[[str], None] = print) -> int:
    """Load the newest checkpoint of ``out`` (model, optimiser, torch RNG) if there is one.

    Returns:
        The first epoch to run: 1 without a checkpoint, else the checkpoint's epoch + 1.
    """
    from .weights import load_checkpoint

    found = latest_checkpoint(out)
    if found is None:
        return 1
    epoch_done, path = found
    state = load_checkpoint(path)
    model.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    log(f"resumed from {path} (epoch {epoch_done})")
    return epoch_done + 1


def save_checkpoint(out: Path, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                    config: dict[str, Any], **extra: Any) -> Path:
    """Write ``out/checkpoint_epoch_<epoch>.pth``: model and optimiser state on the CPU (so it
    resumes on any device), the torch RNG, the config and ``extra`` entries."""
    path = out / f"checkpoint_epoch_{epoch}.pth"
    torch.save({"model": to_cpu(model.state_dict()), "optimizer": to_cpu(opt.state_dict()),
                "epoch": epoch, "torch_rng": torch.get_rng_state(), "config": jsonable(config),
                **extra}, path)
    return path


def scaled_param_groups(model: nn.Module, lr: float,
                        lr_scales: Sequence[tuple[str, float]] = ()) -> list[dict[str, Any]]:
    """Parameter groups for an optimiser, some with their own learning-rate multiplier.

    Each trainable parameter goes into the group of the first ``(pattern, scale)`` of
    ``lr_scales`` whose fnmatch ``pattern`` matches its name (``scale`` is stored as the group's
    ``"lr_scale"``, which :func:`begin_epoch` multiplies into the scheduled rate), else into the
    group of the rest (scale 1). Empty groups are left out.

    Args:
        model: The model whose named parameters are grouped.
        lr: The initial learning rate (groups get ``lr · scale``).
        lr_scales: ``(pattern, scale)`` pairs, e.g. ``[("up_convts.*", 10.0)]``.

    Returns:
        The groups, the rest first.

    Raises:
        ValueError: a scale that is not a positive finite number, or a pattern that matches no
            trainable parameter (a typo would otherwise silently train at the base rate).
    """
    import fnmatch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    buckets: list[list[nn.Parameter]] = [[] for _ in range(len(lr_scales) + 1)]
    for pattern, scale in lr_scales:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"lr_scales: the scale of {pattern!r} must be a positive finite "
                             f"number, got {scale!r}")
        if not any(fnmatch.fnmatchcase(n, pattern) for n, _ in named):
            raise ValueError(f"lr_scales: {pattern!r} matches no trainable parameter of "
                             f"{type(model).__name__} (names look like {named[0][0]!r})"
                             if named else f"lr_scales: {type(model).__name__} has no "
                             f"trainable parameters")
    for name, param in named:
        i = next((i for i, (pattern, _) in enumerate(lr_scales)
                  if fnmatch.fnmatchcase(name, pattern)), None)
        buckets[0 if i is None else i + 1].append(param)
    scales = [1.0] + [float(s) for _, s in lr_scales]
    return [{"params": b, "lr": lr * s, "lr_scale": s} for b, s in zip(buckets, scales) if b]


def begin_epoch(epoch: int, opt: torch.optim.Optimizer, dataset: Any, lr: float,
                milestones: Sequence[int], gamma: float,
                seed: int) -> tuple[float, torch.Generator]:
    """Set the epoch's learning rate (:func:`lr_at`) and ``dataset.epoch`` (when it has one).

    Returns:
        ``(lr, generator)``: the rate set and the shuffling generator of this epoch.
    """
    rate = lr_at(epoch, lr, milestones, gamma)
    for group in opt.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)
    if hasattr(dataset, "epoch"):
        dataset.epoch = epoch
    return rate, torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def run_epochs(model: nn.Module, opt: torch.optim.Optimizer, dataset: Any, cfg: Any,
               result: TrainResult, out: Path, *, collate: Callable[[list[Any]], Any],
               step: Callable[[Any], tuple[torch.Tensor, int]],
               snapshot: Callable[[int], Path],
               evaluate: Optional[Callable[[], tuple[float, str]]] = None,
               progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """The epoch loop shared by the depth and segmentation trainers.

    Epochs ``result.epochs + 1 … cfg.epochs``: :func:`begin_epoch`, a shuffled DataLoader
    (``cfg.batch_size``, ``cfg.num_workers``, at most ``cfg.max_steps_per_epoch`` steps), one
    optimiser step per batch with the loss from ``step(batch) -> (loss, samples)``, a log line
    ``epoch N: loss … lr …`` (plus what ``evaluate()`` returns, every ``cfg.eval_every`` epochs and
    at the end), and ``snapshot(epoch)`` every ``cfg.snapshot_every`` epochs and at the end (it
    writes ``out/weights_epoch_<N>.pth``).

    Returns:
        ``result``, filled in (losses, evaluations, the last weights file).
    """
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm as bar
    for epoch in range(result.epochs + 1, cfg.epochs + 1):
        lr, gen = begin_epoch(epoch, opt, dataset, cfg.lr, cfg.milestones, cfg.gamma, cfg.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                             generator=gen, collate_fn=collate,
                                             num_workers=cfg.num_workers)
        steps = len(loader) if cfg.max_steps_per_epoch is None else min(
            len(loader), cfg.max_steps_per_epoch)
        it: Any = loader
        if bar is not None:
            it = bar(loader, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                     leave=False)
        model.train()
        total, count = 0.0, 0
        for i, batch in enumerate(it):
            if i >= steps:
                break
            opt.zero_grad(set_to_none=True)
            loss, n = step(batch)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * n
            count += n
            if bar is not None:
                it.set_postfix(loss=f"{float(loss.detach()):.4g}", lr=f"{lr:.1e}")
        if bar is not None:
            it.close()
        mean = total / max(count, 1)
        result.losses.append(mean)
        result.epochs = epoch
        msg = f"epoch {epoch}: loss {mean:.5g} lr {lr:.1e}"
        last = epoch == cfg.epochs
        if evaluate is not None and ((cfg.eval_every and epoch % cfg.eval_every == 0) or last):
            result.evals[epoch], note = evaluate()
            msg += note
        log(msg)
        if (cfg.snapshot_every and epoch % cfg.snapshot_every == 0) or last:
            result.weights = snapshot(epoch)
    if result.weights is None and result.epochs >= 1:
        w = out / f"weights_epoch_{result.epochs}.pth"
        result.weights = w if w.exists() else None
    return result
