"""The ``pac-models`` command: ``list``, ``eval``, ``upsample``, ``train``, ``demo``.

``eval`` and ``train`` serve both tasks: joint depth/flow upsampling and semantic segmentation
(``--task``, by default detected from the model name: ``fcn8s…`` names are segmentation).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ._keyvalue import parse_key_values, scene_config

DATASETS = ("middlebury", "nyu", "sintel", "synthetic", "voc")


def _model(name: str, factor: int, weights: Optional[str],
           model_args: Optional[Sequence[str]] = None) -> Any:
    from .registry import create_model

    return create_model(name, pretrained=weights or False, factor=factor,
                        **parse_key_values(model_args))


# --- segmentation -----------------------------------------------------------------------------

def _task(args: argparse.Namespace) -> str:
    """``--task``, or ``segmentation`` for segmentation model names, else ``depth``."""
    task = getattr(args, "task", "auto")
    if task != "auto":
        return task
    from .registry import get_model_entry
    from .segmentation.grammar import is_segmentation_name

    name = args.model or ""
    if is_segmentation_name(name):
        return "segmentation"
    try:
        return "segmentation" if "segmentation" in get_model_entry(name).tags else "depth"
    except (ValueError, TypeError):
        return "depth"


def _seg_model(args: argparse.Namespace) -> Any:
    from .registry import create_model

    kwargs = parse_key_values(args.model_arg)
    if getattr(args, "backbone_weights", None):
        kwargs["backbone_weights"] = args.backbone_weights
    try:
        model = create_model(args.model, pretrained=args.weights or False,
                             num_classes=args.num_classes, **kwargs)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    _load_init_weights(model, getattr(args, "init_weights", None),
                       getattr(args, "init_exclude", None))
    return model.to(args.device)


def _load_init_weights(model: Any, init: Optional[str],
                       exclude: Optional[Sequence[str]] = None) -> None:
    """``train --init-weights``: a file or a weights tag, loaded non-strictly (keys reported);
    keys matching an ``--init-exclude`` pattern keep their fresh initialisation."""
    if not init:
        return
    import fnmatch

    from .weights import get_weights, load_checkpoint, map_legacy_keys, resolve_file

    path: Any = init
    if not Path(init).is_file():
        try:
            path = resolve_file(get_weights(init))
        except ValueError as exc:
            raise SystemExit(f"error: --init-weights {init!r} is neither a file nor a weights "
                             f"tag ({exc})") from None
    sd = map_legacy_keys(load_checkpoint(path), model.state_dict().keys())
    skipped = sorted(k for k in sd if any(fnmatch.fnmatchcase(k, p) for p in exclude or ()))
    sd = {k: v for k, v in sd.items() if k not in skipped}
    res = model.load_state_dict(sd, strict=False)
    print(f"loaded {init} non-strictly: missing keys {list(res.missing_keys) or 'none'}; "
          f"unexpected keys {list(res.unexpected_keys) or 'none'}; excluded keys "
          f"{skipped or 'none'}")


def _voc_dataset(args: argparse.Namespace, split: str, train: bool) -> Any:
    from .segmentation import SegmentationInputs, VOCSegmentation

    if args.dataset not in (None, "voc"):
        raise SystemExit(f"segmentation models need --dataset voc, got {args.dataset!r}")
    if not args.data:
        raise SystemExit("--data PATH (VOCdevkit/VOC2012 or a folder above it) is needed for "
                         "--dataset voc")
    if train:
        crop = 449 if args.crop is None else args.crop
        tf = SegmentationInputs(crop, train=True, flip=True, scale=args.scale,
                                jitter=args.jitter)
    else:
        tf = SegmentationInputs(args.test_crop, train=False)
    try:
        return VOCSegmentation(args.data, split, sbd_root=args.sbd, transform=tf,
                               seed=args.seed, lists_dir=args.lists_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None


def _cmd_eval_segmentation(args: argparse.Namespace) -> int:
    from .segmentation import evaluate

    model = _seg_model(args)
    split = args.split or "val"
    ds = _voc_dataset(args, split, train=False)
    res = evaluate(model, ds, limit=args.limit, progress=not args.quiet,
                   save_dir=args.save_dir, save=args.save)
    print(f"voc {split}, {args.model}: mIoU {100 * res.miou:.2f} %, pixel accuracy "
          f"{100 * res.acc:.2f} %, mean class accuracy {100 * res.macc:.2f} % over "
          f"{res.count} images")
    return 0


def _cmd_train_segmentation(args: argparse.Namespace) -> int:
    import torch

    from .segmentation import SegTrainConfig, train

    if args.lr_scale:
        raise SystemExit("error: --lr-scale is only for depth models (the segmentation trainer "
                         "has one learning rate)")
    torch.manual_seed(args.seed)
    model = _seg_model(args)
    ds = _voc_dataset(args, args.train_split, train=True)
    ev = None
    if args.eval_limit != 0:
        ev = _voc_dataset(args, args.split or "val", train=False)
        if args.eval_limit and args.eval_limit > 0:
            ev = torch.utils.data.Subset(ev, range(min(args.eval_limit, len(ev))))
    cfg = SegTrainConfig(epochs=args.epochs, lr=1e-3 if args.lr is None else args.lr,
                         milestones=tuple(args.milestones), optimizer=args.optimizer,
                         loss=args.loss, batch_size=args.batch_size, seed=args.seed,
                         snapshot_every=1 if args.snapshot_every is None else args.snapshot_every,
                         eval_every=1 if args.eval_every is None else args.eval_every,
                         max_steps_per_epoch=args.max_steps,
                         num_workers=args.workers)
    try:
        res = train(model, ds, args.out, cfg, eval_dataset=ev, resume=not args.no_resume,
                    progress=not args.quiet)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"trained epochs {res.start_epoch}–{res.epochs}; weights: {res.weights}")
    return 0


def _dataset(args: argparse.Namespace, split: str, train: bool) -> Any:
    from .data import AssembleJointUpsamplingInputs, NYUDepthV2, SintelFlow, SyntheticScenes

    f = args.factor
    crop = args.crop if train else None
    d4 = train and getattr(args, "augment", "flip") == "d4"
    if d4 and args.dataset != "synthetic":
        raise SystemExit(f"--augment d4 is only for --dataset synthetic, not {args.dataset!r}")
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
        tf = AssembleJointUpsamplingInputs(f, crop=crop, flip=train, lowres_mode="center", d4=d4)
        seed = args.seed if train else args.seed + 10_000  # disjoint scenes for evaluation
        cache = train and getattr(args, "cache_scenes", False)
        cfg = scene_config(getattr(args, "scene_arg", None))
        return SyntheticScenes(args.scenes, (size, size), factor=f, transform=tf, seed=seed,
                               cache=cache, config=cfg)
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
    if _task(args) == "segmentation":
        return _cmd_eval_segmentation(args)
    args.dataset = args.dataset or "middlebury"
    args.split = args.split or "test"
    model = _model(args.model, args.factor, args.weights,
                   getattr(args, "model_arg", None)).to(args.device)
    if args.dataset == "middlebury":
        from .depth.evaluate import evaluate_middlebury

        ours, bil = evaluate_middlebury(model, args.factor, args.crop)
        print(f"Middlebury motorcycle (centre-pixel low resolution), factor {args.factor}: "
              f"RMSE {args.model} {ours:.4f}, bilinear {bil:.4f} (disparity px)")
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

    from .depth.api import DEFAULT_ENSEMBLE, select_model, upsample

    depth = _read_depth(Path(args.depth))
    if depth.ndim == 3:
        depth = depth[..., 0]
    rgb = np.asarray(iio.imread(args.rgb))
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        raise SystemExit(f"{args.rgb}: expected an 8-bit RGB image, got {rgb.dtype}")
    if args.model:
        model = _model(args.model, args.factor, args.weights, getattr(args, "model_arg", None))
        desc = args.model
    else:
        model, desc = select_model(args.factor)
    try:
        ensemble = args.ensemble or ("none" if args.model else DEFAULT_ENSEMBLE)
        out = upsample(depth.astype(np.float64), rgb, args.factor, model=model,
                       ensemble=ensemble).numpy()
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
    """``train``, data-parallel under ``torchrun`` (see :mod:`pac_models.distributed`)."""
    from .distributed import per_rank_batch, process_group

    with process_group(args.device) as (ctx, device):
        try:
            per_rank_batch(args.batch_size, ctx.world_size, "--batch-size")
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        args.device = str(device)
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    import torch

    from .depth.train import TrainConfig, train
    from .registry import create_model

    if _task(args) == "segmentation":
        return _cmd_train_segmentation(args)
    args.dataset = args.dataset or "synthetic"
    args.crop = 256 if args.crop is None else args.crop
    args.lr = 1e-4 if args.lr is None else args.lr
    args.snapshot_every = 100 if args.snapshot_every is None else args.snapshot_every
    args.eval_every = 10 if args.eval_every is None else args.eval_every
    torch.manual_seed(args.seed)
    model = create_model(args.model, factor=args.factor,
                         **parse_key_values(getattr(args, "model_arg", None)))
    _load_init_weights(model, args.init_weights, args.init_exclude)
    model = model.to(args.device)
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
                      max_steps_per_epoch=args.max_steps, num_workers=args.workers,
                      lr_scales=_lr_scales(args.lr_scale, model))
    res = train(model, ds, args.factor, args.out, cfg, eval_dataset=ev,
                eval_metric="epe" if args.dataset == "sintel" else "rmse",
                resume=not args.no_resume, progress=not args.quiet)
    print(f"trained epochs {res.start_epoch}–{res.epochs}; weights: {res.weights}")
    return 0


def _lr_scales(items: Sequence[str], model: Any) -> tuple[tuple[str, float], ...]:
    """``--lr-scale PATTERN=FACTOR`` values as ``(pattern, factor)`` pairs, checked against
    ``model``'s parameter names (and the factors' range) by
    :func:`~pac_models.training.scaled_param_groups`."""
    from .training import scaled_param_groups

    pairs = []
    for item in items:
        pattern, sep, factor = item.rpartition("=")
        try:
            value = float(factor)
        except ValueError:
            sep = ""  # not a number: report it as malformed below
        if not sep or not pattern:
            raise SystemExit(f"error: --lr-scale expects PATTERN=FACTOR with a positive FACTOR, "
                             f"got {item!r}")
        pairs.append((pattern, value))
    try:
        scaled_param_groups(model, 1.0, pairs)
    except ValueError as exc:
        raise SystemExit(f"error: --lr-scale: {exc}") from None
    return tuple(pairs)


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
        sp.add_argument("--task", choices=("auto", "depth", "segmentation"), default="auto",
                        help="default: segmentation for fcn8s… model names, else depth")
        sp.add_argument("--num-classes", type=int, default=21, help="segmentation classes")
        sp.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra builder argument (repeatable), e.g. width=8")

    def data(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--dataset", choices=DATASETS, default=None,
                        help=f"default: {default} (depth models), voc (segmentation models)")
        sp.add_argument("--data", default=None,
                        help="NYU .mat file, Sintel root or VOC root (VOCdevkit/VOC2012)")
        sp.add_argument("--sbd", default=None,
                        help="voc: SBD root (benchmark_RELEASE/dataset), for the *_aug splits")
        sp.add_argument("--lists-dir", default=None,
                        help="voc: folder with extra split lists (train11.txt, val11.txt, …)")
        sp.add_argument("--test-crop", type=int, default=-1,
                        help="voc: evaluation canvas size (-1: full image; 512 for fcn8spac)")
        sp.add_argument("--backbone-weights", default=None,
                        help="segmentation: VGG-16 or FCN-8s weights (path or URL) for the "
                             "backbone")
        sp.add_argument("--sintel-pass", default="clean", choices=("clean", "final", "albedo"))
        sp.add_argument("--scenes", type=int, default=64, help="synthetic: number of scenes")
        sp.add_argument("--scene-size", type=int, default=256, help="synthetic: scene size")
        sp.add_argument("--scene-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="synthetic: a SceneConfig field, e.g. fractal_prob=0.5 "
                             "(repeatable; values are Python literals)")
        sp.add_argument("--seed", type=int, default=1)
        sp.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    ev = sub.add_parser("eval", help="RMSE/EPE of a model on a dataset or the Middlebury sample; "
                                     "mIoU of a segmentation model on VOC")
    common(ev, "pac_refine")
    data(ev, "middlebury")
    ev.add_argument("--split", default=None,
                    help="train/val/test (NYU; default test), train/val (Sintel), a VOC split "
                         "(default val)")
    ev.add_argument("--save-dir", default=None, help="voc: write every prediction here")
    ev.add_argument("--save", choices=("pred", "raw"), default="pred",
                    help="voc: palette PNG of the argmax (pred) or float32 .npy scores (raw)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N images")
    ev.add_argument("--crop", type=int, nargs=4, default=None,
                    metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"),
                    help="middlebury: evaluate on this window only")
    ev.set_defaults(crop=None)

    up = sub.add_parser("upsample", help="upsample a depth map guided by an RGB image")
    common(up, None)
    up.add_argument("--depth", required=True, help="low-resolution depth (.npy or .png)")
    up.add_argument("--rgb", required=True, help="RGB image at the output resolution")
    up.add_argument("--out", required=True, help="output .npy (float32) or .png (16-bit)")
    up.add_argument("--png-scale", type=float, default=1.0,
                    help="multiply by this before writing a 16-bit PNG (e.g. 1000: m → mm)")
    up.add_argument("--ensemble", choices=("none", "h", "hv", "d4"), default=None,
                    help="test-time self-ensemble: average over mirror images (h: 2 passes, hv: "
                         "4, d4: 8 with the transposes); default: the shipped weights' "
                         "(depth.DEFAULT_ENSEMBLE), none with --model")

    tr = sub.add_parser("train", help="train a joint-upsampling or segmentation model "
                                      "(progress, snapshots, resume; data-parallel under "
                                      "torchrun)")
    common(tr, "pac_joint_upsample")
    data(tr, "synthetic")
    tr.add_argument("--out", required=True, help="snapshot folder (resumed from if present)")
    tr.add_argument("--epochs", type=int, default=1)
    tr.add_argument("--lr", type=float, default=None,
                    help="default 1e-4 (depth), 1e-3 (segmentation)")
    tr.add_argument("--lr-scale", action="append", default=[], metavar="PATTERN=FACTOR",
                    help="depth: parameters whose name matches the fnmatch PATTERN train at "
                         "FACTOR times the rate (repeatable; the first match wins), e.g. "
                         "'up_convts.*=10'")
    tr.add_argument("--milestones", type=int, nargs="*", default=[],
                    help="epochs from which lr is divided by 10 (pacnet: 3500 4500)")
    tr.add_argument("--batch-size", type=int, default=1,
                    help="samples per step; under torchrun the global batch, split evenly "
                         "across the processes")
    tr.add_argument("--crop", type=int, default=None,
                    help="random square crop (depth: default 256, ÷ factor; voc: default 449)")
    tr.add_argument("--augment", choices=("flip", "d4"), default="flip",
                    help="synthetic depth: random horizontal flips (flip) or all 8 symmetries of "
                         "the square (d4: also vertical flips and transposes; the scenes must "
                         "have their depth at the pixel centres, --scene-arg supersample=3)")
    tr.add_argument("--train-split", default="train_aug", help="voc: training split")
    tr.add_argument("--split", default=None, help="voc: evaluation split (default val)")
    tr.add_argument("--loss", default="ce", help="voc: 'ce' or 'fce_<t>'")
    tr.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="voc")
    tr.add_argument("--scale", type=float, default=0.0, help="voc: random scale ±s")
    tr.add_argument("--jitter", action="store_true", help="voc: colour jitter")
    tr.add_argument("--init-weights", default=None,
                    help="initial weights (a file or a weights tag) loaded non-strictly "
                         "(missing/unexpected keys are printed), e.g. a stage-1 snapshot into a "
                         "loose CRF, or shipped depth weights into a model with more layers")
    tr.add_argument("--init-exclude", action="append", default=[], metavar="PATTERN",
                    help="keys of --init-weights not to load (fnmatch pattern, repeatable), "
                         "e.g. 'features.2.*' to re-initialise a layer")
    tr.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch")
    tr.add_argument("--snapshot-every", type=int, default=None,
                    help="default 100 (depth), 1 (segmentation)")
    tr.add_argument("--eval-every", type=int, default=None,
                    help="default 10 (depth), 1 (segmentation)")
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
            sample; mIoU of a segmentation model on VOC 2012 (+ SBD).
        upsample: depth (.npy/.png) + RGB image in, upsampled depth (.npy/.png) out.
        train: train a model (depth or segmentation) with progress bars, snapshots, resume and
            a seed.
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
