"""The ``pac-models`` command: ``list``, ``eval``, ``upsample``, ``train``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

DATASETS = ("middlebury", "nyu", "sintel", "synthetic")


def _model(name: str, factor: int, weights: Optional[str]) -> Any:
    from .registry import create_model

    return create_model(name, pretrained=weights or False, factor=factor)


def _dataset(args: argparse.Namespace, split: str, train: bool) -> Any:
    from .data import AssembleJointUpsamplingInputs, NYUDepthV2, SintelFlow, SyntheticScenes

    f = args.factor
    crop = args.crop if train else None
    if args.dataset == "nyu":
        if not args.data:
            raise SystemExit("--data PATH/nyu_depth_v2_labeled.mat is needed for --dataset nyu")
        tf = AssembleJointUpsamplingInputs(f, crop=crop, flip=train, output_crop=0 if train else 6,
                                           lowres_mode="center")
        return NYUDepthV2(args.data, split=split, factor=f, transform=tf, seed=args.seed)
    if args.dataset == "sintel":
        if not args.data:
            raise SystemExit("--data PATH (the folder holding training/) is needed for sintel")
        tf = AssembleJointUpsamplingInputs(f, crop=crop, flip=train, lowres_mode="bilinear")
        return SintelFlow(args.data, split=split, factor=f, pass_name=args.sintel_pass,
                          transform=tf, seed=args.seed)
    if args.dataset == "synthetic":
        size = args.scene_size
        tf = AssembleJointUpsamplingInputs(f, crop=crop, flip=train, lowres_mode="center")
        seed = args.seed if train else args.seed + 10_000  # disjoint scenes for evaluation
        cache = train and getattr(args, "cache_scenes", False)
        return SyntheticScenes(args.scenes, (size, size), factor=f, transform=tf, seed=seed,
                               cache=cache)
    raise SystemExit(f"dataset {args.dataset!r} is not supported here")


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_model_entry, list_models
    from .weights import list_weights

    for name in list_models(args.pattern):
        entry = get_model_entry(name)
        doc = (entry.builder.__doc__ or "").strip().splitlines()
        print(f"{name:28s} {', '.join(entry.tags):24s} {doc[0] if doc else ''}")
        if args.weights:
            for w in list_weights(name):
                where = f"file {w.file}" if w.shipped else f"url {w.url}"
                metrics = ", ".join(f"{k}={v}" for k, v in w.metrics.items())
                print(f"    {w.tag}: {dict(w.model_kwargs)}, {where}, licence {w.licence}"
                      + (f", {metrics}" if metrics else ""))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    model = _model(args.model, args.factor, args.weights).to(args.device)
    if args.dataset == "middlebury":
        from .depth.evaluate import evaluate_middlebury

        ours, bil = evaluate_middlebury(model, args.factor, args.downscale)
        print(f"Middlebury motorcycle (×{args.downscale} working resolution), factor "
              f"{args.factor}: RMSE {args.model} {ours:.4f}, bilinear {bil:.4f} (disparity px)")
        return 0
    from .depth.evaluate import evaluate

    ds = _dataset(args, args.split, train=False)
    metric = "epe" if args.dataset == "sintel" else "rmse"
    res = evaluate(model, ds, args.factor, metric, limit=args.limit, progress=not args.quiet)
    unit = {"nyu": "m", "sintel": "px", "synthetic": "m"}[args.dataset]
    extra = f" = {100 * res.value:.3f} cm" if args.dataset == "nyu" else ""
    print(f"{args.dataset} {args.split}, factor {args.factor}, {args.model}: "
          f"{metric.upper()} {res.value:.5f} {unit}{extra} over {res.count} images")
    return 0


def _read_depth(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def _cmd_upsample(args: argparse.Namespace) -> int:
    import imageio.v3 as iio

    from .depth.api import select_model, upsample

    depth = _read_depth(Path(args.depth))
    if depth.ndim == 3:
        depth = depth[..., 0]
    rgb = np.asarray(iio.imread(args.rgb))
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        raise SystemExit(f"{args.rgb}: expected an 8-bit RGB image, got {rgb.dtype}")
    if args.model:
        model = _model(args.model, args.factor, args.weights)
        desc = args.model
    else:
        model, desc = select_model(args.factor)
    try:
        out = upsample(depth.astype(np.float64), rgb, args.factor, model=model).numpy()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    dst = Path(args.out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".npy":
        np.save(dst, out.astype(np.float32))
    elif dst.suffix == ".png":
        scaled = np.round(out * args.png_scale)
        if scaled.min() < 0 or scaled.max() > 65535:
            raise SystemExit(
                f"values × {args.png_scale} span [{scaled.min()}, {scaled.max()}], outside a "
                "16-bit PNG; choose --png-scale or write .npy"
            )
        iio.imwrite(dst, scaled.astype(np.uint16))
    else:
        raise SystemExit(f"--out must end in .npy or .png, got {dst}")
    print(f"wrote {dst} ({out.shape[0]}×{out.shape[1]}, model {desc})")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .depth.train import TrainConfig, train
    from .registry import create_model

    torch.manual_seed(args.seed)
    model = create_model(args.model, factor=args.factor).to(args.device)
    ds = _dataset(args, "train", train=True)
    ev = None
    if args.eval_limit != 0:
        split = "val" if args.dataset == "sintel" else "test"
        ev_full = _dataset(args, split, train=False)
        if args.eval_limit and args.eval_limit > 0:
            ev = torch.utils.data.Subset(ev_full, range(min(args.eval_limit, len(ev_full))))
        else:
            ev = ev_full
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, milestones=tuple(args.milestones),
                      batch_size=args.batch_size, seed=args.seed,
                      snapshot_every=args.snapshot_every, eval_every=args.eval_every,
                      max_steps_per_epoch=args.max_steps, num_workers=args.workers)
    res = train(model, ds, args.factor, args.out, cfg, eval_dataset=ev,
                eval_metric="epe" if args.dataset == "sintel" else "rmse",
                resume=not args.no_resume, progress=not args.quiet)
    print(f"trained epochs {res.start_epoch}–{res.epochs}; weights: {res.weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pac-models``."""
    p = argparse.ArgumentParser(prog="pac-models", description="pac-models command line")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("demo", help="joint depth upsampling of the bundled Middlebury image",
                   add_help=False).add_argument("rest", nargs=argparse.REMAINDER)

    ls = sub.add_parser("list", help="registered models (and their weights records)")
    ls.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'pac_*'")
    ls.add_argument("--weights", action="store_true", help="also list the weights records")

    def common(sp: argparse.ArgumentParser, default_model: Optional[str]) -> None:
        sp.add_argument("--model", default=default_model, help="registered model name")
        sp.add_argument("--factor", type=int, default=8, choices=(4, 8, 16))
        sp.add_argument("--weights", default=None,
                        help="weights: a record tag, a file path or a URL")

    def data(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--dataset", choices=DATASETS, default=default)
        sp.add_argument("--data", default=None, help="NYU .mat file or Sintel root")
        sp.add_argument("--sintel-pass", default="clean", choices=("clean", "final", "albedo"))
        sp.add_argument("--scenes", type=int, default=64, help="synthetic: number of scenes")
        sp.add_argument("--scene-size", type=int, default=256, help="synthetic: scene size")
        sp.add_argument("--seed", type=int, default=1)
        sp.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    ev = sub.add_parser("eval", help="RMSE/EPE of a model on a dataset or the Middlebury sample")
    common(ev, "pac_refine")
    data(ev, "middlebury")
    ev.add_argument("--split", default="test", help="train/val/test (NYU), train/val (Sintel)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N images")
    ev.add_argument("--downscale", type=int, default=2, help="middlebury working resolution")
    ev.set_defaults(crop=None)

    up = sub.add_parser("upsample", help="upsample a depth map guided by an RGB image")
    common(up, None)
    up.add_argument("--depth", required=True, help="low-resolution depth (.npy or .png)")
    up.add_argument("--rgb", required=True, help="RGB image at the output resolution")
    up.add_argument("--out", required=True, help="output .npy (float32) or .png (16-bit)")
    up.add_argument("--png-scale", type=float, default=1.0,
                    help="multiply by this before writing a 16-bit PNG (e.g. 1000: m → mm)")

    tr = sub.add_parser("train", help="train a joint-upsampling model (progress, snapshots, "
                                      "resume)")
    common(tr, "pac_joint_upsample")
    data(tr, "synthetic")
    tr.add_argument("--out", required=True, help="snapshot folder (resumed from if present)")
    tr.add_argument("--epochs", type=int, default=1)
    tr.add_argument("--lr", type=float, default=1e-4)
    tr.add_argument("--milestones", type=int, nargs="*", default=[],
                    help="epochs from which lr is divided by 10 (pacnet: 3500 4500)")
    tr.add_argument("--batch-size", type=int, default=1)
    tr.add_argument("--crop", type=int, default=256, help="random square crop (÷ factor)")
    tr.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch")
    tr.add_argument("--snapshot-every", type=int, default=100)
    tr.add_argument("--eval-every", type=int, default=10)
    tr.add_argument("--eval-limit", type=int, default=-1,
                    help="evaluate on the first N test images (0: no evaluation, -1: all)")
    tr.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    tr.add_argument("--cache-scenes", action="store_true",
                    help="synthetic: render each training scene once and keep it in memory "
                         "(use with --workers 0)")
    tr.add_argument("--no-resume", action="store_true", help="ignore existing snapshots")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``pac-models``.

    Subcommands:
        list: registered models (``--weights``: their weights records).
        eval: RMSE (EPE for Sintel) of a model on NYU, Sintel, synthetic scenes or the Middlebury
            sample.
        upsample: depth (.npy/.png) + RGB image in, upsampled depth (.npy/.png) out.
        train: train a model with progress bars, snapshots, resume and a seed.
        demo: guided upsampling of the Middlebury disparity (same as ``python -m pac_models.demo``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    args = build_parser().parse_args(argv)
    handlers = {"list": _cmd_list, "eval": _cmd_eval, "upsample": _cmd_upsample,
                "train": _cmd_train}
    return handlers[args.command](args)
