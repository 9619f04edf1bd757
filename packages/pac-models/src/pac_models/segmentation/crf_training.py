"""Learn the few parameters of the default PAC-CRF on labelled synthetic scenes.

Data: :func:`pac_models.data.synthetic_seg.synthetic_seg_batch` — dead-leaves scenes labelled
foreground/background at a random depth percentile in [30, 70], with coarse logits made by
downsampling the labelling ×8 or ×16 and upsampling it again (the same function the Middlebury demo
uses). The model: :class:`~pac_models.segmentation.api.PacCrfRefiner` with a Potts CRF
(:data:`RECIPE_CRF`, three kernels, by default; ``--crf`` a four-kernel CRF for the v3/v4
weights, and :data:`~pac_models.segmentation.api.DEFAULT_CRF`, the same kernels in 8 loose steps,
for v5); its parameters are the unary weight, one 5×5 spatial filter per kernel and the
per-kernel colour scales (85 numbers with three kernels, 113 with four, plus one dead
``pairwise_weights`` per kernel; a loose CRF has a unary weight and filters per step: 8 × 105 +
12 = 852 for v5, the dead weights included). Loss: NLL of the
refined log-probabilities against the labels. Optimiser: Adam (the colour scales get a larger
learning rate, as they live on a scale of tens; both rates drop ×10 after two thirds of the steps);
the scales are kept ≥ 1. The spatial filters start at a tenth of the Gaussian filler of
docs/semantics.md §6.1 (which,
summed over its taps, outweighs the unaries about 20 to 1 and over-smooths).

Run (the recipes of the shipped weights, see ``pac_models/weights/README.md``)::

    python -m pac_models.segmentation.crf_training --out paccrf_refiner_synthetic_v1.safetensors
    python -m pac_models.segmentation.crf_training --out paccrf_refiner_synthetic_v2.safetensors \
        --scene-arg fractal_prob=0.7 --scene-arg camouflage_prob=0.3 --scene-arg thin_prob=0.15
    python -m pac_models.segmentation.crf_training --out paccrf_refiner_synthetic_v3.safetensors \
        --crf crfp0ds511p0ds541p0ds5121p0ds5321 --size 320 320 \
        --scene-arg fractal_prob=0.7 --scene-arg camouflage_prob=0.3 --scene-arg thin_prob=0.15
    python -m pac_models.segmentation.crf_training --out paccrf_refiner_synthetic_v4.safetensors \
        --crf crfp0ds511p0ds541p0ds5121p0ds5321 --size 384 384 \
        --scene-arg fractal_prob=0.7 --scene-arg camouflage_prob=0.3 --scene-arg thin_prob=0.15
    python -m pac_models.segmentation.crf_training --out paccrf_refiner_synthetic_v5.safetensors \
        --crf crfi8lp0ds511p0ds541p0ds5121p0ds5321 --size 384 384 \
        --scene-arg fractal_prob=0.7 --scene-arg camouflage_prob=0.3 --scene-arg thin_prob=0.15

Everything is seeded; one CPU thread by default. With ``--checkpoint-every N`` the run writes a
checkpoint every ``N`` steps into ``<out>.checkpoints/`` (model, optimiser, scheduler, the batch
generator, every process's random states, the step) and a restart with the same ``--out``
continues from the newest one. Under ``torchrun`` the steps run data-parallel (gloo, CPU): every
process draws the same scenes and takes its share of the batch (``--batch`` is the global batch,
a multiple of the world size).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import distributed
from .._keyvalue import scene_config
from ..data.synthetic import SceneConfig
from ..data.synthetic_seg import IGNORE_INDEX, synthetic_seg_batch
from .api import PacCrfRefiner, image_tensor

__all__ = ["RECIPE_CRF", "TrainConfig", "TrainResult", "evaluate", "main", "mean_iou", "train_crf"]

RECIPE_CRF = "crfp0ds511p0ds541p0ds5121"
"""The CRF :class:`TrainConfig` trains by default: three Potts kernels at dilations 1, 4, 12
(the v1/v2 weights; v3, the default of ``refine``, adds a fourth at dilation 32)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train_crf` (the defaults are the v1 weights' recipe).

    Attributes:
        steps: Adam steps.
        batch: Scenes per step.
        scenes: Training scenes (drawn with replacement per step).
        size: Scene ``(height, width)``; multiples of every factor.
        factors: Coarse-logit factors, alternating over the scenes.
        percentile: Range of the per-scene depth percentile of the threshold.
        lr: Adam learning rate of the CRF parameters (divided by 10 after two thirds of the
            steps, for both groups).
        scale_lr: Adam learning rate of the colour scales.
        seed: Seed of the model init, the scenes (``[seed, i]``) and the batch draws.
        eval_scenes: Held-out scenes (seed ``seed + 1000``) scored before and after.
        crf: The CRF (model-name grammar).
        scene: Scene parameters of the training and held-out scenes (None: the default
            :class:`~pac_models.data.SceneConfig`).
        init_filter_scale: The messengers' initial spatial filters (docs/semantics.md §6.1's
            Gaussian
            ``'crf'`` filler, whose taps sum to about 25 per kernel and outweigh the unaries)
            are multiplied by this before training.
    """

    steps: int = 300
    batch: int = 4
    scenes: int = 96
    size: tuple[int, int] = (192, 192)
    factors: tuple[int, ...] = (8, 16)
    percentile: tuple[float, float] = (30.0, 70.0)
    lr: float = 0.01
    scale_lr: float = 0.05
    seed: int = 0
    eval_scenes: int = 16
    crf: str = RECIPE_CRF
    init_filter_scale: float = 0.1
    scene: Optional[SceneConfig] = None


@dataclass
class TrainResult:
    """What :func:`train_crf` returns.

    Attributes:
        model: The trained refiner.
        losses: Training loss per step.
        miou_before: Held-out mIoU (%) of the coarse logits.
        miou_after: Held-out mIoU (%) after refinement, before training (index 0) and after.
        seconds: Wall-clock training time (of this run, after a resume).
        start_step: Steps already done by the checkpoint resumed from (0 for a fresh run).

    In a data-parallel run the held-out scores are computed on rank 0 only (NaN elsewhere).
    """

    model: PacCrfRefiner
    losses: list[float] = field(default_factory=list)
    miou_before: float = float("nan")
    miou_after: tuple[float, float] = (float("nan"), float("nan"))
    seconds: float = 0.0
    start_step: int = 0


def mean_iou(pred: Union[Tensor, np.ndarray], labels: Union[Tensor, np.ndarray], num_classes: int,
             ignore_index: int = IGNORE_INDEX) -> float:
    """mIoU in percent over the classes present in prediction or labels (ignored pixels left out).

    Args:
        pred: Integer predictions, any shape.
        labels: Integer labels of the same shape; ``ignore_index`` (or anything outside
            ``[0, num_classes)``) is not scored.
        num_classes: ``L``.
        ignore_index: Label of unscored pixels.
    """
    p = torch.as_tensor(np.asarray(pred) if isinstance(pred, np.ndarray) else pred).reshape(-1)
    t = torch.as_tensor(np.asarray(labels) if isinstance(labels, np.ndarray) else labels)
    t = t.reshape(-1).long()
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.numel()} elements, labels {t.numel()}")
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    p, t = p[keep].long(), t[keep]
    conf = torch.bincount(t * num_classes + p, minlength=num_classes**2)
    conf = conf.reshape(num_classes, num_classes).double()
    tp = conf.diag()
    denom = conf.sum(0) + conf.sum(1) - tp
    present = denom > 0
    return float((tp[present] / denom[present]).mean() * 100.0)


@torch.no_grad()
def evaluate(model: PacCrfRefiner, logits: Tensor, rgb: Tensor, labels: Tensor,
             batch: int = 4) -> tuple[float, float]:
    """``(mIoU of argmax(logits), mIoU after model)`` in percent over all scenes together."""
    before, after = [], []
    for i in range(0, logits.shape[0], batch):
        lg = logits[i:i + batch]
        before.append(lg.argmax(1))
        after.append(model(lg, image_tensor(rgb[i:i + batch])).argmax(1))
    n = logits.shape[1]
    return (mean_iou(torch.cat(before), labels, n), mean_iou(torch.cat(after), labels, n))


_STEP_CKPT = re.compile(r"checkpoint_step_(\d+)\.pth$")


def _save(folder: Path, step: int, model: PacCrfRefiner, opt: torch.optim.Optimizer,
          sched: torch.optim.lr_scheduler.LRScheduler, gen: torch.Generator,
          result: TrainResult, config: TrainConfig) -> None:
    """Write ``folder/checkpoint_step_<step>.pth`` on rank 0 (every rank must call it: the random
    states are gathered)."""
    from ..training import capture_rng, jsonable, to_cpu

    ctx = distributed.context()
    rng = distributed.gather_objects(capture_rng(), ctx)
    if ctx.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"checkpoint_step_{step}.pth"
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"model": to_cpu(model.state_dict()), "optimizer": to_cpu(opt.state_dict()),
                    "scheduler": sched.state_dict(), "generator": gen.get_state(), "step": step,
                    "losses": list(result.losses), "miou_before": result.miou_before,
                    "miou_untrained": result.miou_after[0], "world_size": ctx.world_size,
                    "rng": to_cpu(rng), "config": jsonable(asdict(config)),
                    "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(path)
    distributed.barrier(ctx)


def train_crf(config: TrainConfig = TrainConfig(), *, log_every: int = 25,
              log: Optional[callable] = print, checkpoint_dir: Union[str, Path, None] = None,
              checkpoint_every: int = 0, resume: bool = True,
              progress: bool = False) -> TrainResult:
    """Train a :class:`PacCrfRefiner` on synthetic scenes (see the module docstring).

    Under ``torchrun`` (a process group initialised, see :mod:`pac_models.distributed`) the
    model is wrapped in ``DistributedDataParallel``; every process draws the same batch indices
    and takes its share, so the processes together take the single-process steps.

    Args:
        config: Settings (``config.batch`` is the global batch).
        log_every: Print the mean loss every this many steps (0: never).
        log: Print function (None: silent); rank 0 only.
        checkpoint_dir: Folder for ``checkpoint_step_<N>.pth`` files (None: none written).
        checkpoint_every: Steps between checkpoints (0: only at the end; needs
            ``checkpoint_dir``).
        resume: Continue from the newest checkpoint in ``checkpoint_dir``.
        progress: A tqdm progress bar over the steps (rank 0 only).

    Returns:
        The trained model, the losses and held-out mIoU before/after.

    Raises:
        ValueError: a negative ``checkpoint_every``, or in a data-parallel run a batch that is
            not a multiple of the world size.
    """
    from ..training import load_latest

    ctx = distributed.context()
    per = distributed.per_rank_batch(config.batch, ctx.world_size, "batch")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    if not ctx.is_main:
        log, progress = None, False
    torch.manual_seed(config.seed)
    model = PacCrfRefiner(2, config.crf)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "compute_kernel") and isinstance(getattr(m, "weight", None),
                                                           torch.nn.Parameter):
                m.weight.mul_(config.init_filter_scale)
    t0 = time.perf_counter()
    logits, rgb, labels = synthetic_seg_batch(config.scenes, config.size, config.factors,
                                              config.seed, config.percentile, config.scene)
    ev = synthetic_seg_batch(config.eval_scenes, config.size, config.factors,
                             config.seed + 1000, config.percentile, config.scene)
    images = image_tensor(rgb)
    scales = list(model.feat_scales.parameters())
    scale_ids = {id(p) for p in scales}
    others = [p for p in model.parameters() if id(p) not in scale_ids and p.requires_grad]
    opt = torch.optim.Adam([{"params": others, "lr": config.lr},
                            {"params": scales, "lr": config.scale_lr}])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2 * config.steps // 3], gamma=0.1)
    result = TrainResult(model)
    model.eval()
    gen = torch.Generator().manual_seed(config.seed)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    state = None
    if folder is not None and resume:
        state = load_latest(folder, model, opt, log or (lambda _: None), scheduler=sched,
                            pattern=_STEP_CKPT)
    if state is None:
        if ctx.is_main:
            result.miou_before, untrained = evaluate(model, *ev)
        else:
            untrained = float("nan")
    else:
        gen.set_state(state["generator"])
        result.start_step = int(state["step"])
        result.losses = [float(v) for v in state["losses"]]
        result.miou_before, untrained = float(state["miou_before"]), float(state["miou_untrained"])
    net = distributed.wrap(model, ctx, find_unused_parameters=True)  # the dead pairwise weights
    if ctx.distributed and log is not None:
        log(f"data-parallel training: world size {ctx.world_size} ({ctx.backend}), global batch "
            f"{config.batch} = {per} per process")
    steps: Any = range(result.start_step, config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, total=config.steps, initial=result.start_step, desc="crf",
                     unit="step", leave=False)
    for step in steps:
        idx = torch.randint(0, config.scenes, (config.batch,), generator=gen)
        mine = idx[ctx.rank * per:(ctx.rank + 1) * per]
        out = net(logits[mine], images[mine])
        loss = F.nll_loss(out, labels[mine], ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for s in scales:
                s.clamp_(min=1.0)
        value = distributed.all_reduce_sums([loss.item()], ctx)[0] / ctx.world_size
        result.losses.append(value)
        if progress:
            steps.set_postfix(loss=f"{value:.4f}")
        if log is not None and log_every and (step + 1) % log_every == 0:
            recent = result.losses[-log_every:]
            log(f"step {step + 1}/{config.steps}: loss {sum(recent) / len(recent):.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
        done = step + 1
        if folder is not None and (done == config.steps
                                   or (checkpoint_every and done % checkpoint_every == 0)):
            result.miou_after = (untrained, float("nan"))
            _save(folder, done, model, opt, sched, gen, result, config)
    if progress:
        steps.close()
    trained = evaluate(model, *ev)[1] if ctx.is_main else float("nan")
    result.miou_after = (untrained, trained)
    result.seconds = time.perf_counter() - t0
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pac_models.segmentation.crf_training --out FILE`` (data-parallel under
    ``torchrun``)."""
    d = TrainConfig()
    ap = argparse.ArgumentParser(prog="python -m pac_models.segmentation.crf_training",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="weights file (.safetensors)")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch", type=int, default=d.batch,
                    help="scenes per step; under torchrun the global batch, split evenly across "
                         "the processes")
    ap.add_argument("--scenes", type=int, default=d.scenes)
    ap.add_argument("--size", type=int, nargs=2, default=list(d.size))
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--scale-lr", type=float, default=d.scale_lr)
    ap.add_argument("--init-filter-scale", type=float, default=d.init_filter_scale)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--crf", default=d.crf, help="the CRF, in the model-name grammar")
    ap.add_argument("--factors", type=int, nargs="+", default=list(d.factors),
                    help="coarse-logit factors, alternating over the scenes")
    ap.add_argument("--scene-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="a SceneConfig field of the synthetic scenes, e.g. fractal_prob=0.7")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                    help="write a checkpoint every N steps (and at the end) into "
                         "OUT.checkpoints/; a restart with the same --out resumes from the "
                         "newest (0: no checkpoints)")
    ap.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.checkpoint_every < 0:
        raise SystemExit(f"error: --checkpoint-every must be >= 0, got {args.checkpoint_every}")
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, scenes=args.scenes,
                      size=(args.size[0], args.size[1]), lr=args.lr, scale_lr=args.scale_lr,
                      init_filter_scale=args.init_filter_scale, seed=args.seed, crf=args.crf,
                      factors=tuple(args.factors), scene=scene_config(args.scene_arg))
    out = Path(args.out)
    folder = out.with_name(out.name + ".checkpoints") if args.checkpoint_every else None
    with distributed.process_group("cpu") as (ctx, _):
        try:
            distributed.per_rank_batch(cfg.batch, ctx.world_size, "--batch")
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        res = train_crf(cfg, checkpoint_dir=folder, checkpoint_every=args.checkpoint_every,
                        resume=not args.no_resume, progress=not args.quiet)
        if not ctx.is_main:
            return 0
        from ..weights import save_weights

        digest = save_weights(res.model, out)
        where = f" across {ctx.world_size} processes" if ctx.distributed else ""
        print(f"trained {cfg.steps} steps in {res.seconds:.0f} s ({args.threads} thread(s)"
              f"{where})" + (f", resumed at step {res.start_step}" if res.start_step else ""))
        print(f"held-out synthetic mIoU ({cfg.eval_scenes} scenes, seed {cfg.seed + 1000}): "
              f"coarse {res.miou_before:.2f}, untrained CRF {res.miou_after[0]:.2f}, "
              f"trained CRF {res.miou_after[1]:.2f}")
        print("parameters:", {k: [round(x, 4) for x in v.flatten().tolist()][:6]
                              for k, v in res.model.state_dict().items()})
        print(f"{args.out}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
