"""Data-parallel training under ``torchrun``: the process group, the batch split, the sampler,
metric reduction and rank-0-only output.

Everything here is a no-op in a plain single process: :func:`context` then reports world size 1
and the trainers run exactly as before. Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables) :func:`process_group` starts a process group
(``nccl`` for CUDA devices, each rank on ``cuda:<LOCAL_RANK>``; ``gloo`` on the CPU) and the
trainers wrap their model in :class:`~torch.nn.parallel.DistributedDataParallel`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

__all__ = ["DistContext", "EpochOrderSampler", "all_reduce_sums", "barrier", "broadcast_object",
           "context", "gather_objects", "launched_by_torchrun", "per_rank_batch",
           "process_group", "unwrap", "wrap"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: Global rank (0 in a single process).
        world_size: Number of processes (1 in a single process).
        local_rank: Rank on this node (the CUDA device index under ``nccl``).
        backend: ``"gloo"``, ``"nccl"``, …, or None without a process group.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs, shows progress and writes snapshots."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment names this process's rank and world size (``torchrun`` sets
    ``RANK`` and ``WORLD_SIZE``)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def context() -> DistContext:
    """The current process group's rank and size, or the single-process context."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_backend())


@contextlib.contextmanager
def process_group(device: Union[str, torch.device] = "cpu", *,
                  quiet_others: bool = True) -> Iterator[tuple[DistContext, torch.device]]:
    """Join the ``torchrun`` process group for the duration of the block.

    Without ``torchrun`` (or with a group already initialised by the caller) nothing is started
    and the device is returned as given. Otherwise the backend is ``nccl`` for a CUDA ``device``
    (each rank then uses ``cuda:<LOCAL_RANK>``, whatever index ``device`` names) and ``gloo``
    for the CPU; the group is destroyed when the block ends.

    Args:
        device: The device asked for (e.g. the CLI's ``--device``).
        quiet_others: Discard what ranks other than 0 print to stdout inside the block, so
            the log is written once.

    Yields:
        ``(context, device)``: the rank and world size, and the device this rank trains on.

    Raises:
        ValueError: a CUDA device asked for without CUDA available.
    """
    dev = torch.device(device)
    started = False
    if launched_by_torchrun() and not dist.is_initialized():
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available")
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
        started = True
    ctx = context()
    finished = False
    try:
        if quiet_others and not ctx.is_main:
            with contextlib.redirect_stdout(io.StringIO()):
                yield ctx, dev
        else:
            yield ctx, dev
        finished = True
    finally:
        if started:
            if finished:
                # Leave together: a process that tears its process group down while a peer is
                # still working aborts that peer.
                dist.barrier()
            dist.destroy_process_group()


def per_rank_batch(global_batch: int, world_size: int, name: str = "batch_size") -> int:
    """The per-process share of a global batch.

    Raises:
        ValueError: ``global_batch`` is not a positive multiple of ``world_size``.
    """
    if global_batch < 1 or global_batch % world_size:
        raise ValueError(f"{name} is the global batch, split evenly across the {world_size} "
                         f"processes; it must be a positive multiple of {world_size}, "
                         f"got {global_batch}")
    return global_batch // world_size


def wrap(model: nn.Module, ctx: Optional[DistContext] = None, **ddp_kwargs: Any) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` when several processes
    train, else ``model`` itself. Parameters are broadcast from rank 0 on wrapping.

    Args:
        model: The model, on this rank's device.
        ctx: The run (default :func:`context`).
        **ddp_kwargs: Passed to ``DistributedDataParallel``, e.g.
            ``find_unused_parameters=True`` for a model with trainable parameters that its
            forward does not use.
    """
    ctx = ctx or context()
    if not ctx.distributed:
        return model
    p = next(iter(model.parameters()), None)
    ids = [p.device.index] if p is not None and p.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a :class:`~torch.nn.parallel.DistributedDataParallel` wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _reduce_device(ctx: DistContext) -> torch.device:
    if ctx.backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sums(values: Sequence[float], ctx: Optional[DistContext] = None) -> list[float]:
    """Sums of ``values`` over all processes (``values`` itself in a single process)."""
    ctx = ctx or context()
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_reduce_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: Any, ctx: Optional[DistContext] = None) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, …]`` on every process (``[obj]`` in a single one)."""
    ctx = ctx or context()
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: Optional[DistContext] = None) -> Any:
    """Rank 0's ``obj`` on every process (for state only rank 0 read, e.g. a checkpoint)."""
    ctx = ctx or context()
    if not ctx.distributed:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Optional[DistContext] = None) -> None:
    """Wait for every process (nothing in a single process)."""
    ctx = ctx or context()
    if ctx.distributed:
        dist.barrier()


class EpochOrderSampler(DistributedSampler):
    """A :class:`~torch.utils.data.DistributedSampler` whose shuffled order per epoch is the order a
    single-process ``DataLoader(dataset, shuffle=True, generator=generator(epoch))`` visits.

    Rank ``r`` of ``N`` takes positions ``r, r + N, r + 2N, …`` of that order (padded, like
    ``DistributedSampler``, to a multiple of ``N`` by repeating its start), so with ``b`` samples
    per rank and step, step ``i`` of the ``N`` ranks together sees positions ``i·N·b …
    (i+1)·N·b − 1``: the same global batches as one process with batch ``N·b``.

    Args:
        dataset: The training set.
        generator: ``epoch -> torch.Generator`` of the single-process loop.
        num_replicas: World size.
        rank: This process's rank.
    """

    def __init__(self, dataset: Any, generator: Callable[[int], torch.Generator],
                 num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True)
        self._generator = generator

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        # the DataLoader draws from its generator before its sampler does: iterate one over the
        # indices themselves rather than re-deriving its order
        loader = torch.utils.data.DataLoader(range(n), batch_size=max(n, 1), shuffle=True,
                                             generator=self._generator(self.epoch))
        order = [int(i) for batch in loader for i in batch]
        pad = self.total_size - len(order)
        order += (order * (pad // max(n, 1) + 1))[:pad]
        return iter(order[self.rank:self.total_size:self.num_replicas])
