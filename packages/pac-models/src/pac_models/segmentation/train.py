"""Evaluation (docs/semantics.md §B.6) and training (docs/semantics.md §B.7) of segmentation
models, with progress bars,
snapshots and resume.

Training writes, every ``snapshot_every`` epochs and at the end, ``out/weights_epoch_<N>.pth``
(a plain state_dict in pacnet's layout; a frozen-backbone model omits its ``backbone.*`` keys, as
pacnet's snapshots do) and ``out/checkpoint_epoch_<N>.pth`` (the whole model, optimiser, epoch and
random states, loadable with ``torch.load(weights_only=True)``); with ``resume=True`` training
continues from the newest checkpoint in ``out``.

Under ``torchrun`` the model trains data-parallel (see :mod:`pac_models.distributed`);
``batch_size`` is the global batch, split evenly across the processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import distributed
from ..training import TrainResult, prepare, run_epochs, save_checkpoint
from .data import SegSample, collate_segmentation, write_label_png
from .metrics import ConfusionMatrix, segmentation_loss

__all__ = ["SegEvalResult", "SegTrainConfig", "SegTrainResult", "evaluate", "train"]


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _num_classes(model: nn.Module, num_classes: Optional[int]) -> int:
    n = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    if not isinstance(n, int) or n < 1:
        raise ValueError("num_classes must be given when the model has no num_classes attribute")
    return n


@dataclass
class SegEvalResult:
    """Scores over a split.

    Attributes:
        miou: Mean IoU (0–1).
        acc: Pixel accuracy.
        macc: Mean class accuracy.
        count: Images evaluated.
        iou: Per-class IoU (NaN for classes that never occur).
    """

    miou: float
    acc: float
    macc: float
    count: int
    iou: list[float] = field(default_factory=list)


def evaluate(model: nn.Module, dataset: torch.utils.data.Dataset,
             num_classes: Optional[int] = None, *, limit: Optional[int] = None,
             progress: bool = True, save_dir: Union[str, Path, None] = None,
             save: str = "pred") -> SegEvalResult:
    """mIoU, pixel accuracy and mean class accuracy of ``model`` over ``dataset`` (batch 1).

    The model is called as ``model(image, label.shape[-2:])``; the prediction is the argmax over
    classes; the confusion matrix accumulates over the whole split (void pixels skipped).

    Args:
        model: A segmentation model (on the device to run on).
        dataset: Items are :class:`~pac_models.segmentation.SegSample`.
        num_classes: Default ``model.num_classes``.
        limit: Only the first ``limit`` images.
        progress: tqdm progress bar.
        save_dir: Also write each output here: ``<id>.png`` (argmax, VOC palette) for
            ``save='pred'`` or ``<id>.npy`` (float32 scores) for ``save='raw'``.
        save: ``'pred'`` or ``'raw'``.

    Returns:
        The scores.
    """
    if save not in ("pred", "raw"):
        raise ValueError(f"save must be 'pred' or 'raw', got {save!r}")
    n = _num_classes(model, num_classes)
    count = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    cm = _confusion(model, torch.utils.data.Subset(dataset, range(count)), n, progress=progress,
                    save_dir=save_dir, save=save)
    s = cm.summary()
    return SegEvalResult(s["miou"], s["acc"], s["macc"], count, [float(v) for v in cm.iou()])


def _confusion(model: nn.Module, dataset: torch.utils.data.Dataset, num_classes: int, *,
               progress: bool = False, save_dir: Union[str, Path, None] = None,
               save: str = "pred") -> ConfusionMatrix:
    """The confusion matrix of ``model``'s argmax over ``dataset`` (see :func:`evaluate`)."""
    cm = ConfusionMatrix(num_classes)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False,
                                         collate_fn=collate_segmentation)
    it: Any = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, total=len(dataset), desc="eval", unit="img", leave=False)
    device = _device(model)
    out_dir = Path(save_dir) if save_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in it:
                image, label = batch.image.to(device), batch.label.to(device)
                out = model(image, tuple(label.shape[-2:]))
                pred = out.argmax(1)
                cm.update(pred, label)
                if out_dir is not None:
                    name = str(batch.id[0])
                    if save == "pred":
                        write_label_png(out_dir / f"{name}.png", pred[0].cpu().numpy())
                    else:
                        np.save(out_dir / f"{name}.npy", out[0].float().cpu().numpy())
    finally:
        model.train(was_training)
    return cm


def _evaluate_sharded(model: nn.Module, dataset: torch.utils.data.Dataset,
                      progress: bool) -> SegEvalResult:
    """:func:`evaluate` in a data-parallel run: every process scores every world_size-th image
    and the confusion matrices are summed."""
    ctx = distributed.context()
    n = _num_classes(model, None)
    total = len(dataset)  # type: ignore[arg-type]
    cm = _confusion(model, torch.utils.data.Subset(dataset, range(ctx.rank, total,
                                                                  ctx.world_size)),
                    n, progress=progress and ctx.is_main)
    summed = distributed.all_reduce_sums(cm.matrix.ravel().tolist(), ctx)
    cm.matrix = np.rint(summed).astype(np.int64).reshape(n, n)
    s = cm.summary()
    return SegEvalResult(s["miou"], s["acc"], s["macc"], total, [float(v) for v in cm.iou()])


@dataclass
class SegTrainConfig:
    """Training settings (defaults: pacnet's segmentation script, B.7, except the epoch count).

    Attributes:
        epochs: Number of epochs.
        lr: Learning rate (pacnet: 1e-3 for stage 1, 1e-7 for stage 2).
        milestones: Epochs (1-based) from which the rate is multiplied by ``gamma``.
        gamma: Decay factor.
        optimizer: ``'adam'`` or ``'sgd'`` (momentum 0.5).
        weight_decay: Weight decay.
        loss: ``'ce'`` or ``'fce_<t>'`` (see :func:`segmentation_loss`).
        batch_size: Samples per step (pacnet: 1; larger needs a training crop); in a
            data-parallel run the global batch, a multiple of the world size.
        seed: Seed for shuffling and augmentation.
        snapshot_every: Epochs between snapshots (always one at the end).
        eval_every: Epochs between evaluations (0 = only at the end).
        max_steps_per_epoch: Cap on steps per epoch (smoke tests; None = full pass).
        num_workers: DataLoader workers.
    """

    epochs: int = 1
    lr: float = 1e-3
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    optimizer: str = "adam"
    weight_decay: float = 0.0
    loss: str = "ce"
    batch_size: int = 1
    seed: int = 1
    snapshot_every: int = 1
    eval_every: int = 1
    max_steps_per_epoch: Optional[int] = None
    num_workers: int = 0


SegTrainResult = TrainResult
"""What :func:`train` did (:class:`pac_models.training.TrainResult`; ``evals`` holds mIoU)."""


def _optimizer(params: list[nn.Parameter], cfg: SegTrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.5, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


def train(model: nn.Module, dataset: torch.utils.data.Dataset, out: Union[str, Path],
          config: Optional[SegTrainConfig] = None, *,
          eval_dataset: Optional[torch.utils.data.Dataset] = None, resume: bool = True,
          progress: bool = True, log: Callable[[str], None] = print) -> SegTrainResult:
    """Train a segmentation model on ``dataset`` (items: :class:`SegSample`).

    Only parameters with ``requires_grad`` are optimised (a ``frozen`` backbone stays fixed but,
    as in pacnet, runs in train mode, so its dropout is active).

    Args:
        model: The model, on the device to train on.
        dataset: Training samples; its ``epoch`` attribute, if any, is set before each epoch.
        out: Snapshot folder (created).
        config: Settings.
        eval_dataset: Optional evaluation set (mIoU every ``eval_every`` epochs and at the end).
        resume: Continue from the newest checkpoint in ``out``.
        progress: tqdm progress bars (rank 0 only).
        log: Where one-line messages go.

    Returns:
        The epochs run, losses, evaluations and the final weights path.
    """

    cfg = config or SegTrainConfig()
    if cfg.loss != "ce" and not cfg.loss.startswith("fce_"):
        raise ValueError(f"loss must be 'ce' or 'fce_<t>', got {cfg.loss!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    opt = _optimizer(params, cfg)
    frozen = bool(getattr(model, "backbone_frozen", False))
    net, result = prepare(model, opt, out, seed=cfg.seed, batch_size=cfg.batch_size,
                          resume=resume, log=log)

    def snapshot(epoch: int, extra: dict[str, Any]) -> Path:
        sd = {k: v.detach().cpu() for k, v in model.state_dict().items()
              if not (frozen and k.startswith("backbone."))}
        weights = out / f"weights_epoch_{epoch}.pth"
        torch.save(sd, weights)
        save_checkpoint(out, epoch, model, opt, asdict(cfg),
                        model_name=str(getattr(model, "model_name", type(model).__name__)),
                        **extra)
        return weights

    def step(batch: SegSample) -> tuple[torch.Tensor, int]:
        image, label = batch.image.to(device), batch.label.to(device)
        loss = segmentation_loss(net(image, tuple(label.shape[-2:])), label, cfg.loss)
        return loss, image.shape[0]

    def run_eval() -> tuple[float, str]:
        ev = (_evaluate_sharded(model, eval_dataset, progress) if distributed.context().distributed
              else evaluate(model, eval_dataset, progress=progress))
        return ev.miou, f", eval mIoU {100 * ev.miou:.2f} % ({ev.count} images)"

    device = _device(model)
    return run_epochs(net, opt, dataset, cfg, result, out, collate=collate_segmentation,
                      step=step, snapshot=snapshot,
                      evaluate=run_eval if eval_dataset is not None else None,
                      progress=progress, log=log)
