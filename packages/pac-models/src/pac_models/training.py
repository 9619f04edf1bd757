"""Helpers shared by the training loops (depth and segmentation): the learning-rate schedule, the
epoch loop (single-process or data-parallel under ``torchrun``, see :mod:`pac_models.distributed`)
and checkpoint files for resuming."""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from . import distributed

__all__ = ["TrainResult", "begin_epoch", "capture_rng", "epoch_generator", "jsonable",
           "latest_checkpoint", "load_latest", "lr_at", "prepare", "restore_rng", "resume",
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
        step: Optimiser steps taken since the start of the run (a resumed run counts the steps
            before the checkpoint too).
    """

    start_epoch: int
    epochs: int
    losses: list[float] = field(default_factory=list)
    evals: dict[int, float] = field(default_factory=dict)
    weights: Optional[Path] = None
    step: int = 0


def lr_at(epoch: int, lr: float, milestones: Sequence[int], gamma: float) -> float:
    """Learning rate of 1-based ``epoch``: ``lr · gamma^(number of milestones ≤ epoch)``.

    With milestones (3500, 4500) this gives 1e-4 for epochs 1–3499, 1e-5 for 3500–4499 and 1e-6
    from 4500 on, the values pacnet's pre-1.1 ``scheduler.step()``-first loop produced.
    """
    return lr * gamma ** sum(epoch >= m for m in milestones)


_CKPT = re.compile(r"checkpoint_epoch_(\d+)\.pth$")


def _latest(out: Union[str, Path], pattern: re.Pattern[str]) -> Optional[tuple[int, Path]]:
    best: Optional[tuple[int, Path]] = None
    for p in Path(out).glob("checkpoint_*.pth"):
        m = pattern.search(p.name)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), p)
    return best


def latest_checkpoint(out: Union[str, Path]) -> Optional[tuple[int, Path]]:
    """``(epoch, path)`` of the newest ``checkpoint_epoch_<N>.pth`` in ``out``, or None."""
    return _latest(out, _CKPT)


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


def capture_rng() -> dict[str, Any]:
    """This process's random states: torch (CPU and every CUDA device once CUDA is initialised),
    NumPy's global generator and Python's ``random``, as tensors and plain containers (so a
    checkpoint holding them loads with ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the global one)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the random states :func:`capture_rng` returned."""
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         npst["pos"], npst["has_gauss"], npst["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def load_latest(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
                log: Callable[[str], None] = print,
                scheduler: Optional[Any] = None, pattern: Optional[re.Pattern[str]] = None,
                ) -> Optional[dict[str, Any]]:
    """Restore the newest checkpoint of ``out`` into ``model``, ``opt`` (and ``scheduler``), with
    this process's random states, and say so through ``log`` (on rank 0).

    In a data-parallel run rank 0 reads the file and sends it to the others (``out`` need not be
    on a shared file system); each rank gets back its own random states when the world size is
    the one the checkpoint was written with.

    Args:
        out: The run's folder.
        model: The (unwrapped) model.
        opt: Its optimiser.
        log: Where the "resumed from" line goes.
        scheduler: A learning-rate scheduler saved under ``"scheduler"``.
        pattern: File-name pattern with the checkpoint's number as group 1 (default
            ``checkpoint_epoch_<N>.pth``).

    Returns:
        The checkpoint's entries, or None when there is no checkpoint.
    """
    from .weights import load_checkpoint

    ctx = distributed.context()
    state = None
    if ctx.is_main:
        found = _latest(out, pattern or _CKPT)
        if found is not None:
            state = load_checkpoint(found[1])
            state["_path"] = str(found[1])
    state = distributed.broadcast_object(state, ctx)
    if state is None:
        return None
    model.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    states = state.get("rng")
    saved_world = int(state.get("world_size", 1))
    if states:
        restore_rng(states[ctx.rank] if saved_world == ctx.world_size else states[0])
    else:  # written before per-process random states were saved
        torch.set_rng_state(state["torch_rng"].cpu())
    where = f"epoch {state['epoch']}" if "epoch" in state else ""
    if "step" in state:
        where += (", " if where else "") + f"step {state['step']}"
    note = (f"; it was written by {saved_world} process(es), this run has {ctx.world_size}: "
            "the data order is the same, the per-process random streams are not"
            if saved_world != ctx.world_size else "")
    if ctx.is_main:
        log(f"resumed from {state['_path']} ({where}){note}")
    return state


def resume(out: Path, model: nn.Module, opt: torch.optim.Optimizer,
           log: Callable[[str], None] = print) -> int:
    """Load the newest checkpoint of ``out`` (model, optimiser, random states) if there is one.

    Returns:
        The first epoch to run: 1 without a checkpoint, else the checkpoint's epoch + 1.
    """
    state = load_latest(out, model, opt, log)
    return 1 if state is None else int(state["epoch"]) + 1


def save_checkpoint(out: Path, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                    config: dict[str, Any], **extra: Any) -> Path:
    """Write ``out/checkpoint_epoch_<epoch>.pth``: model and optimiser state on the CPU (so it
    resumes on any device), the torch RNG, the config and ``extra`` entries (the epoch loop adds
    ``step``, ``world_size`` and ``rng``, every process's :func:`capture_rng`).

    The file is written under a temporary name and renamed, so an interrupted write never leaves
    a truncated checkpoint that a restart would pick."""
    path = out / f"checkpoint_epoch_{epoch}.pth"
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": to_cpu(model.state_dict()), "optimizer": to_cpu(opt.state_dict()),
                "epoch": epoch, "torch_rng": torch.get_rng_state(), "config": jsonable(config),
                **to_cpu(extra)}, tmp)
    tmp.replace(path)
    return path


def prepare(model: nn.Module, opt: torch.optim.Optimizer, out: Path, *, seed: int,
            batch_size: int, resume: bool, log: Callable[[str], None] = print,
            ) -> tuple[nn.Module, TrainResult]:
    """Set up a run of :func:`run_epochs`: the data-parallel wrapper, the per-process random
    streams and the resume.

    In a data-parallel run (see :mod:`pac_models.distributed`) the model is wrapped in
    ``DistributedDataParallel`` (rank 0's parameters are broadcast), each rank's torch RNG is
    seeded with ``seed + rank`` (so dropout differs between the ranks' samples) and the world
    size is logged; in a single process ``model`` is returned as it is.

    Returns:
        ``(net, result)``: the model to call in training steps (wrapped or not) and the
        :class:`TrainResult` to fill, its epoch and step counters at the checkpoint's values.

    Raises:
        ValueError: ``batch_size`` is not a multiple of the world size.
    """
    ctx = distributed.context()
    per = distributed.per_rank_batch(batch_size, ctx.world_size)
    net = distributed.wrap(model, ctx)
    if ctx.distributed:
        torch.manual_seed(seed + ctx.rank)
        if ctx.is_main:
            log(f"data-parallel training: world size {ctx.world_size} ({ctx.backend}), "
                f"global batch {batch_size} = {per} per process")
    state = load_latest(out, model, opt, log) if resume else None
    start = 1 if state is None else int(state["epoch"]) + 1
    return net, TrainResult(start_epoch=start, epochs=start - 1,
                            step=0 if state is None else int(state.get("step", 0)))


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


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of 1-based ``epoch`` of a run seeded with ``seed``."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


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
    return rate, epoch_generator(seed, epoch)


def _loader(dataset: Any, cfg: Any, gen: torch.Generator, epoch: int,
            collate: Callable[[list[Any]], Any],
            ctx: distributed.DistContext) -> torch.utils.data.DataLoader:
    """The epoch's DataLoader: shuffled by ``gen`` in one process; in several, each rank takes its
    share of the same order (:class:`~pac_models.distributed.EpochOrderSampler`), so the global
    batches are the single-process ones."""
    if not ctx.distributed:
        return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                                           generator=gen, collate_fn=collate,
                                           num_workers=cfg.num_workers)
    sampler = distributed.EpochOrderSampler(dataset, lambda e: epoch_generator(cfg.seed, e),
                                            ctx.world_size, ctx.rank)
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(
        dataset, batch_size=distributed.per_rank_batch(cfg.batch_size, ctx.world_size),
        sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers)


def run_epochs(model: nn.Module, opt: torch.optim.Optimizer, dataset: Any, cfg: Any,
               result: TrainResult, out: Path, *, collate: Callable[[list[Any]], Any],
               step: Callable[[Any], tuple[torch.Tensor, int]],
               snapshot: Callable[[int, dict[str, Any]], Path],
               evaluate: Optional[Callable[[], tuple[float, str]]] = None,
               progress: bool = True, log: Callable[[str], None] = print) -> TrainResult:
    """The epoch loop shared by the depth and segmentation trainers.

    Epochs ``result.epochs + 1 … cfg.epochs``: :func:`begin_epoch`, a shuffled DataLoader
    (``cfg.batch_size``, the global batch, split across the processes of a data-parallel run;
    ``cfg.num_workers``; at most ``cfg.max_steps_per_epoch`` steps), one optimiser step per batch
    with the loss from ``step(batch) -> (loss, samples)``, a log line ``epoch N: loss … lr …,
    … samples/s`` (the loss averaged over all processes; plus what ``evaluate()`` returns, every
    ``cfg.eval_every`` epochs and at the end), and ``snapshot(epoch, extra)`` every
    ``cfg.snapshot_every`` epochs and at the end (it writes ``out/weights_epoch_<N>.pth`` and
    passes ``extra`` — step, world size, every process's random states — to
    :func:`save_checkpoint`).

    In a data-parallel run only rank 0 logs, shows progress and calls ``snapshot``;
    ``evaluate`` runs on every process (the trainers' give each a share of the evaluation set
    and combine the scores).

    Returns:
        ``result``, filled in (losses, evaluations, the last weights file, the step count).
    """
    ctx = distributed.context()
    distributed.per_rank_batch(cfg.batch_size, ctx.world_size)
    bar: Any = None
    if progress and ctx.is_main:
        from tqdm.auto import tqdm as bar
    say = log if ctx.is_main else (lambda _: None)
    for epoch in range(result.epochs + 1, cfg.epochs + 1):
        lr, gen = begin_epoch(epoch, opt, dataset, cfg.lr, cfg.milestones, cfg.gamma, cfg.seed)
        loader = _loader(dataset, cfg, gen, epoch, collate, ctx)
        steps = len(loader) if cfg.max_steps_per_epoch is None else min(
            len(loader), cfg.max_steps_per_epoch)
        it: Any = loader
        if bar is not None:
            it = bar(loader, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                     leave=False)
        model.train()
        total, count = 0.0, 0
        t0 = time.perf_counter()
        for i, batch in enumerate(it):
            if i >= steps:
                break
            opt.zero_grad(set_to_none=True)
            loss, n = step(batch)
            loss.backward()
            opt.step()
            result.step += 1
            total += float(loss.detach()) * n
            count += n
            if bar is not None:
                it.set_postfix(loss=f"{float(loss.detach()):.4g}", lr=f"{lr:.1e}")
        seconds = time.perf_counter() - t0
        if bar is not None:
            it.close()
        total, count = distributed.all_reduce_sums([total, count], ctx)
        mean = total / max(count, 1)
        result.losses.append(mean)
        result.epochs = epoch
        rate = count / max(seconds, 1e-9)
        msg = f"epoch {epoch}: loss {mean:.5g} lr {lr:.1e}, {rate:.3g} samples/s"
        last = epoch == cfg.epochs
        if evaluate is not None and ((cfg.eval_every and epoch % cfg.eval_every == 0) or last):
            result.evals[epoch], note = evaluate()
            msg += note
        say(msg)
        if (cfg.snapshot_every and epoch % cfg.snapshot_every == 0) or last:
            extra = {"step": result.step, "world_size": ctx.world_size,
                     "rng": distributed.gather_objects(capture_rng(), ctx)}
            if ctx.is_main:
                result.weights = snapshot(epoch, extra)
            else:
                result.weights = out / f"weights_epoch_{epoch}.pth"
            distributed.barrier(ctx)
    if result.weights is None and result.epochs >= 1:
        w = out / f"weights_epoch_{result.epochs}.pth"
        result.weights = w if w.exists() else None
    return result
