"""The ``pac-models`` command: ``list``, ``eval``, ``upsample``, ``train``, ``demo``.

``eval`` and ``train`` serve both tasks: joint depth/flow upsampling and semantic segmentation
(``--task``, by default detected from the model name: ``fcn8s…`` names are segmentation).

A user mistake (a missing or unreadable file, weights that do not load, an output format the
command cannot write, a bad argument) ends the command with one line on stderr and exit status 2,
found before any computation starts.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import imageio.v3 as iio
import numpy as np
from torch import nn

from . import demo as depth_demo
from . import weights as _weights
from ._keyvalue import parse_key_values, scene_config
from .data import AssembleJointUpsamplingInputs, NYUDepthV2, SintelFlow, SyntheticScenes
from .depth.api import CONSISTENCIES, DEFAULT_ENSEMBLE, DEFAULT_MODEL, upsample
from .depth.evaluate import evaluate, evaluate_middlebury
from .registry import create_model, get_model_entry, list_models, split_model_name_tag
from .segmentation import SegmentationInputs, VOCSegmentation
from .segmentation import demo as seg_demo
from .segmentation import evaluate as evaluate_segmentation
from .segmentation.grammar import is_segmentation_name

DATASETS = ("middlebury", "nyu", "sintel", "synthetic", "voc")
OUTPUT_SUFFIXES = (".npy", ".png")
"""What ``upsample --out`` writes: float32 ``.npy`` or a 16-bit ``.png``."""


class UsageError(SystemExit):
    """A user mistake: :func:`main` prints ``pac-models: error: <message>`` and exits with 2."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.args = (message,)
        self.message = message


def _readable_file(path: str, what: str) -> Path:
    """``path`` as a Path, or a :class:`UsageError` when it is not a readable file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"{what} {path}: no such file")
    if not p.is_file():
        raise UsageError(f"{what} {path}: not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {path}: not readable (permission denied)")
    return p


def _is_weights_name(value: str) -> bool:
    """Whether ``value`` names a weights record (``"model.tag"``)."""
    return any(w.name == value for w in _weights.list_weights())


def _model_spec(args: argparse.Namespace) -> tuple[str, Any, dict[str, Any]]:
    """``(name, pretrained, builder kwargs)`` of ``--model``, ``--weights``, ``--factor`` and
    ``--model-arg``.

    Without ``--model``: a weights name (``model.tag``) brings its model; a file or URL is
    loaded into :data:`~pac_models.depth.DEFAULT_MODEL` built like its default weights at the
    factor; neither means that model's default weights.
    """
    kwargs = parse_key_values(getattr(args, "model_arg", None))
    kwargs["factor"] = args.factor
    weights = args.weights
    if args.model:
        return args.model, weights or False, kwargs
    if weights and _is_weights_name(weights):
        return weights, True, kwargs
    if weights:
        record = _weights.default_weights(DEFAULT_MODEL, args.factor)
        base = dict(record.model_kwargs) if record is not None else {}
        return DEFAULT_MODEL, weights, {**base, **kwargs}
    return DEFAULT_MODEL, True, kwargs


def _build(name: str, pretrained: Any, kwargs: dict[str, Any]) -> nn.Module:
    """``create_model`` with every user mistake turned into a :class:`UsageError`."""
    if isinstance(pretrained, str) and not _weights.is_url(pretrained) \
            and not _is_weights_name(pretrained) and Path(pretrained).expanduser().exists():
        _readable_file(pretrained, "--weights")
    try:
        return create_model(name, pretrained=pretrained, **kwargs)
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        raise UsageError(str(exc)) from None


def _model(args: argparse.Namespace, sampling: Optional[str] = None) -> tuple[nn.Module, str]:
    """The model of ``--model``/``--weights`` (see :func:`_model_spec`) and its description;
    ``sampling`` picks the default weights for that low-resolution sampling."""
    name, pretrained, kwargs = _model_spec(args)
    model = _build(name, pretrained, kwargs if sampling is None or pretrained is not True
                   else {**kwargs, "sampling": sampling})
    if pretrained is True:
        model_name, tag = split_model_name_tag(name)
        record = (_weights.get_weights(name) if tag
                  else _weights.default_weights(get_model_entry(model_name).name,
                                                kwargs.get("factor"), sampling or "center"))
        desc = record.name if record is not None else name
    elif pretrained:
        desc = f"{name} with {pretrained}"
    else:
        desc = name
    return model, desc


# --- segmentation -----------------------------------------------------------------------------

def _task(args: argparse.Namespace) -> str:
    """``--task``, or ``segmentation`` for segmentation model names, else ``depth``."""
    task = getattr(args, "task", "auto")
    if task != "auto":
        return task
    name = args.model or ""
    if is_segmentation_name(name):
        return "segmentation"
    try:
        return "segmentation" if "segmentation" in get_model_entry(name).tags else "depth"
    except (ValueError, TypeError):
        return "depth"


def _seg_model(args: argparse.Namespace) -> Any:
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
    path: Any = init
    if not Path(init).is_file():
        try:
            path = _weights.resolve_file(_weights.get_weights(init))
        except ValueError as exc:
            raise SystemExit(f"error: --init-weights {init!r} is neither a file nor a weights "
                             f"tag ({exc})") from None
    sd = _weights.map_legacy_keys(_weights.load_checkpoint(path), model.state_dict().keys())
    skipped = sorted(k for k in sd if any(fnmatch.fnmatchcase(k, p) for p in exclude or ()))
    sd = {k: v for k, v in sd.items() if k not in skipped}
    res = model.load_state_dict(sd, strict=False)
    print(f"loaded {init} non-strictly: missing keys {list(res.missing_keys) or 'none'}; "
          f"unexpected keys {list(res.unexpected_keys) or 'none'}; excluded keys "
          f"{skipped or 'none'}")


def _voc_dataset(args: argparse.Namespace, split: str, train: bool) -> Any:
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
    model = _seg_model(args)
    split = args.split or "val"
    ds = _voc_dataset(args, split, train=False)
    res = evaluate_segmentation(model, ds, limit=args.limit, progress=not args.quiet,
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
        sensor = None
        if train:
            from .data import SensorConfig

            sensor = SensorConfig(args.sampling, args.holes, args.hole_blobs, args.depth_noise)
        tf = AssembleJointUpsamplingInputs(f, crop=crop, flip=train, lowres_mode="center", d4=d4,
                                           sensor=sensor)
        seed = args.seed if train else args.seed + 10_000  # disjoint scenes for evaluation
        cache = train and getattr(args, "cache_scenes", False)
        cfg = scene_config(getattr(args, "scene_arg", None))
        return SyntheticScenes(args.scenes, (size, size), factor=f, transform=tf, seed=seed,
                               cache=cache, config=cfg)
    raise SystemExit(f"dataset {args.dataset!r} is not supported here")


_ROLE = re.compile(r":[a-z]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def plain_text(text: str) -> str:
    """A docstring line without reST markup (roles, literals, emphasis)."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).find("~") > 0
                     else m.group(1), text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    return re.sub(r"(?<![\w*])\*{1,2}([^*]+)\*{1,2}(?![\w*])", r"\1", text)


def _default_marks(model: str) -> str:
    """``"default weights: ×4 ×8 ×16 ×16 area"`` for a model with default records, else ``""``."""
    marks = [(("×" + str(w.factor)) if w.factor is not None else "yes")
             + ("" if w.sampling == "center" else f" {w.sampling}")
             for w in sorted(_weights.list_weights(model),
                             key=lambda w: (w.factor or 0, w.sampling != "center"))
             if w.default]
    return f"  [default weights: {' '.join(marks)}]" if marks else ""


def _cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r} (try `pac-models list`)")
    for name in names:
        entry = get_model_entry(name)
        paragraph = (entry.builder.__doc__ or "").strip().split("\n\n")[0]
        summary = plain_text(" ".join(line.strip() for line in paragraph.splitlines()))
        print(f"{name:30s} {', '.join(entry.tags):24s} {summary}{_default_marks(name)}")
        if args.weights:
            for w in sorted(_weights.list_weights(name), key=lambda w: (w.factor or 0, w.name)):
                where = f"file {w.file}" if w.shipped else f"url {w.url}"
                mark = ""
                if w.default:
                    mark = f" [default at ×{w.factor}]" if w.factor is not None else " [default]"
                    if w.sampling != "center":
                        mark = mark[:-1] + f", sampling={w.sampling}]"
                args_ = ", ".join(f"{k}={v}" for k, v in w.model_kwargs.items())
                print(f"    {w.name}{mark}")
                print(f"        arguments: {args_ or 'none'}; {where}; licence {w.licence}")
                if w.metrics:
                    print("        metrics: " + ", ".join(f"{k}={v}" for k, v in w.metrics.items()))
    return 0


def _check_data(args: argparse.Namespace, dataset: str) -> None:
    """``--data`` of a dataset that reads one: existing (before any compute)."""
    if dataset in ("nyu", "sintel", "voc") and args.data:
        p = Path(args.data).expanduser()
        if not p.exists():
            raise UsageError(f"--data {args.data}: no such file or folder")
        if dataset == "nyu":
            _readable_file(args.data, "--data")


def _cmd_eval(args: argparse.Namespace) -> int:
    if _task(args) == "segmentation":
        if args.dataset in (None, "voc"):
            _check_data(args, "voc")
        return _cmd_eval_segmentation(args)
    args.dataset = args.dataset or "middlebury"
    args.split = args.split or "test"
    _check_data(args, args.dataset)
    model, desc = _model(args)
    model = model.to(args.device)
    label = args.model or desc
    if args.dataset == "middlebury":
        ours, bil = evaluate_middlebury(model, args.factor, args.crop)
        print(f"Middlebury motorcycle (centre-pixel low resolution), factor {args.factor}: "
              f"RMSE {label} {ours:.4f}, bilinear {bil:.4f} (disparity px)")
        return 0
    try:
        ds = _dataset(args, args.split, train=False)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise UsageError(str(exc)) from None
    metric = "epe" if args.dataset == "sintel" else "rmse"
    res = evaluate(model, ds, args.factor, metric, limit=args.limit, progress=not args.quiet)
    unit = {"nyu": "m", "sintel": "px", "synthetic": "m"}[args.dataset]
    extra = f" = {100 * res.value:.3f} cm" if args.dataset == "nyu" else ""
    print(f"{args.dataset} {args.split}, factor {args.factor}, {label}: "
          f"{metric.upper()} {res.value:.5f} {unit}{extra} over {res.count} images")
    return 0


def _read_image(path: Path, what: str) -> np.ndarray:
    """An image file as an array, or a :class:`UsageError` naming the file."""
    try:
        return np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many types for unreadable files
        raise UsageError(f"{what} {path}: cannot read it as an image "
                         f"({type(exc).__name__}: {exc})") from None


def _read_depth(path: Path) -> np.ndarray:
    """A depth map from ``.npy`` (no pickles) or an image file."""
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"--depth {path}: not a readable .npy array ({exc})") from None
    return _read_image(path, "--depth")


def _check_output(dst: Path) -> None:
    """An output path the command can write (suffix, folder), before any compute."""
    if dst.suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"--out must end in {' or '.join(OUTPUT_SUFFIXES)}, got {dst}")
    folder = dst.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"--out {dst}: cannot write into {folder}")
    if dst.is_dir():
        raise UsageError(f"--out {dst} is a folder")


def _cmd_upsample(args: argparse.Namespace) -> int:
    dst = Path(args.out)
    _check_output(dst)
    depth = _read_depth(_readable_file(args.depth, "--depth"))
    if depth.ndim == 3:
        depth = depth[..., 0]
    rgb = _read_image(_readable_file(args.rgb, "--rgb"), "--rgb")
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        raise UsageError(f"--rgb {args.rgb}: expected an 8-bit RGB image, got {rgb.dtype}")
    if depth.ndim != 2 or not (np.issubdtype(depth.dtype, np.number)
                               and not np.issubdtype(depth.dtype, np.complexfloating)):
        raise UsageError(f"--depth {args.depth}: expected a 2-D map of real numbers, got shape "
                         f"{depth.shape}, dtype {depth.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UsageError(f"--rgb {args.rgb}: expected an RGB image, got shape {rgb.shape}")
    f = args.factor
    if rgb.shape[:2] != (depth.shape[0] * f, depth.shape[1] * f):
        raise UsageError(
            f"--rgb is {rgb.shape[0]}×{rgb.shape[1]} but --depth is {depth.shape[0]}×"
            f"{depth.shape[1]}: with --factor {f} the image must be "
            f"{depth.shape[0] * f}×{depth.shape[1] * f}")
    if np.isinf(depth).any():
        raise UsageError(f"--depth {args.depth}: {int(np.isinf(depth).sum())} infinite "
                         "value(s); mark missing samples NaN or give --valid")
    valid = None
    if args.valid:
        vpath = _readable_file(args.valid, "--valid")
        try:
            valid = np.load(vpath, allow_pickle=False) if vpath.suffix == ".npy" \
                else _read_image(vpath, "--valid")
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"--valid {vpath}: not a readable mask ({exc})") from None
        valid = (valid[..., 0] if valid.ndim == 3 else valid) != 0
    model, desc = _model(args, args.sampling)
    default = not args.model and not args.weights
    try:
        ensemble = args.ensemble or (DEFAULT_ENSEMBLE if default else "none")
        out = upsample(depth.astype(np.float64), rgb, f, model=model, ensemble=ensemble,
                       progress=not args.quiet, sampling=args.sampling, valid=valid,
                       consistency=args.consistency).numpy()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".npy":
        np.save(dst, out.astype(np.float32))
    else:
        scaled = np.round(out * args.png_scale)
        if scaled.min() < 0 or scaled.max() > 65535:
            raise UsageError(
                f"values × {args.png_scale} span [{scaled.min()}, {scaled.max()}], outside a "
                "16-bit PNG; choose --png-scale or write .npy"
            )
        iio.imwrite(dst, scaled.astype(np.uint16))
    print(f"wrote {dst} ({out.shape[0]}×{out.shape[1]}, {desc}, ensemble {ensemble})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    quiet = ["--quiet"] if args.quiet else []
    code = depth_demo.main(["--out", args.out, "--factors", *map(str, args.factors), *quiet])
    if code:
        return code
    return seg_demo.main(["--out", args.out, *quiet])


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

    dm = sub.add_parser("demo", help="the demo: joint depth upsampling of the bundled Middlebury "
                                     "image, then PAC-CRF refinement of segmentation logits")
    dm.add_argument("--out", default="demo-output", help="output folder for the PNG panels")
    dm.add_argument("--factors", type=int, nargs="+", default=[4, 8, 16], choices=(4, 8, 16),
                    help="depth upsampling factors")
    dm.add_argument("--quiet", action="store_true", help="no progress bars")

    ls = sub.add_parser("list", help="registered models, their default weights (and with "
                                     "--weights every weights record)")
    ls.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'pac_*'")
    ls.add_argument("--weights", action="store_true", help="also list the weights records")

    def common(sp: argparse.ArgumentParser, default_model: Optional[str]) -> None:
        sp.add_argument("--model", default=default_model,
                        help="registered model name (default: the model of --weights, or "
                             f"{DEFAULT_MODEL} with its default weights)"
                        if default_model is None else "registered model name")
        sp.add_argument("--factor", type=int, default=8, choices=(4, 8, 16))
        sp.add_argument("--weights", default=None,
                        help="weights: a name from `pac-models list --weights` (model.tag), a "
                             "file path or a URL")
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
    common(ev, None)
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
                         "(depth.DEFAULT_ENSEMBLE), none with --model or --weights")
    up.add_argument("--sampling", choices=("center", "area"), default="center",
                    help="how --depth samples the image: 'center' (one pixel per block, a "
                         "decimated map) or 'area' (block means: a depth sensor)")
    up.add_argument("--consistency", choices=CONSISTENCIES, default=None,
                    help="with --sampling area: move the output's block means onto the input "
                         "(bilinear: back-projection, box: one shift per block, none: off); "
                         "default: depth.AREA_CONSISTENCY for area input, none otherwise")
    up.add_argument("--valid", default=None,
                    help="mask of the usable depth samples (.npy or .png, nonzero = valid); "
                         "NaN depth values are missing too")
    up.add_argument("--quiet", action="store_true", help="no progress bar")

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
    tr.add_argument("--sampling", choices=("center", "area", "mixed", "block"), default="center",
                    help="synthetic depth: low-resolution sampling (data.SensorConfig; 'block': "
                         "plain block means, for weights that serve sampling='area')")
    tr.add_argument("--holes", type=float, default=0.0,
                    help="synthetic depth: largest fraction of missing low-resolution samples")
    tr.add_argument("--hole-blobs", type=float, default=0.0,
                    help="synthetic depth: probability of elliptic holes")
    tr.add_argument("--depth-noise", type=float, default=0.0,
                    help="synthetic depth: largest relative noise of the low-resolution depth")
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
        demo: guided upsampling of the Middlebury disparity (``python -m pac_models.demo``), then
            PAC-CRF refinement of segmentation logits (``python -m
            pac_models.segmentation.demo``), as ``nox -s demo`` runs them.

    Returns:
        0 on success. A user mistake raises ``SystemExit(2)`` after one line on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    handlers = {"list": _cmd_list, "eval": _cmd_eval, "upsample": _cmd_upsample,
                "train": _cmd_train, "demo": _cmd_demo}
    try:
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"pac-models: error: {exc.message}", file=sys.stderr)
        raise
    except SystemExit as exc:  # SystemExit("error: ...") of the training code: one line, too
        if not isinstance(exc.code, str):
            raise
        message = exc.code[len("error: "):] if exc.code.startswith("error: ") else exc.code
        print(f"pac-models: error: {message}", file=sys.stderr)
        raise UsageError(message) from None
