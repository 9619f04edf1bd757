"""Weights records, the download cache, safe checkpoint loading and legacy key mapping.

Every checkpoint pac-models knows about is a :class:`Weights` record, named ``MODEL.TAG``
(``"pac_jbu_refine.x8_synthetic_v7"``). The records are data: ``pac_models/weights/manifest.json``
holds them, beside the weight files that ship with the package. A record gives the file (shipped)
or a URL (fetched with :func:`torch.hub.download_url_to_file` into
``<torch.hub.get_dir()>/checkpoints/pac_models``), its sha256 (checked **before** the file is
deserialised), its licence, the builder arguments the weights need, how they were trained and
what they measured. ``"default": true`` marks the record that ``pretrained=True`` loads: at most
one per model, factor and sampling (``"sampling"``: the low-resolution sampling the weights are
for, ``"center"`` unless the record says ``"area"``; a sampling without a default of its own is
served by the ``"center"`` default).

Checkpoints are read with :func:`safetensors.torch.load_file` or
``torch.load(weights_only=True)``, never with unrestricted pickle: a file whose pickle would import
or call anything beyond tensors and plain containers is refused with
:class:`UnsafeCheckpointError` before any of its code runs.

pacnet's own checkpoints (NVIDIA, CC BY-NC-SA 4.0, non-commercial) are listed as URL records so
their licence is stated; they are never shipped and never the default. Their sha256 is unknown,
so loading them needs an explicit ``check_hash=False``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any, Optional, Union
from urllib.parse import unquote, urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as _load_safetensors
from safetensors.torch import save_file as _save_safetensors
from torch import Tensor, nn

__all__ = [
    "MANIFEST",
    "NON_COMMERCIAL_LICENCE",
    "SAMPLINGS",
    "CheckpointError",
    "UnsafeCheckpointError",
    "Weights",
    "cache_dir",
    "default_weights",
    "download",
    "get_weights",
    "is_url",
    "list_weights",
    "load_checkpoint",
    "load_file",
    "load_into",
    "load_manifest",
    "load_record",
    "map_legacy_keys",
    "register_weights",
    "resolve_file",
    "same_kwarg",
    "save_weights",
    "sha256sum",
    "shipped_dir",
    "unregister_weights",
]

NON_COMMERCIAL_LICENCE = "CC BY-NC-SA 4.0 (NVIDIA pacnet release; non-commercial use only)"
SAMPLINGS = ("center", "area")
"""Values of :attr:`Weights.sampling` (those of :func:`pac_models.depth.upsample`)."""
MANIFEST = "manifest.json"
"""File name of the records, inside :func:`shipped_dir`."""
_MANIFEST_FORMAT = 1
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_KEY_MAPS = ("none", "pacnet")


class CheckpointError(ValueError):
    """A file that cannot be read as a checkpoint (not one, truncated or corrupt)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects beyond tensors and plain containers (refused unread)."""


def _plain_file_name(file: str) -> bool:
    """Whether ``file`` is a bare file name (no folder, not absolute, not ``.``/``..``)."""
    return (bool(file) and file not in (".", "..") and PurePosixPath(file).name == file
            and PureWindowsPath(file).name == file)


@dataclass(frozen=True)
class Weights:
    """One checkpoint.

    Attributes:
        model: Registered model name it belongs to.
        tag: Identifier among that model's weights (``"x8_synthetic_v7"``); :attr:`name` is
            ``"<model>.<tag>"``.
        model_kwargs: Builder arguments the weights need (``{"factor": 8, "stage": 4}``).
        file: File name inside the weights folder (:func:`shipped_dir`) when shipped.
        url: Download URL when not shipped.
        sha256: Hex digest of the file; None only for third-party files that could not be
            checksummed (loading then needs ``check_hash=False``).
        licence: SPDX id or text.
        recipe: How the weights were trained (data, command line).
        metrics: Measured scores, e.g. ``{"middlebury_rmse_px": 2.46}``.
        key_map: ``"none"`` or ``"pacnet"`` (pacnet's checkpoint layout: unwrapped and mapped).
        default: Loaded by ``pretrained=True`` for this model, factor and sampling.
        task: ``"depth"``, ``"flow"`` or ``"segmentation"``.
        sampling: The low-resolution sampling the weights are trained for, one of
            :data:`SAMPLINGS`: ``"center"`` (point samples; also the fallback that serves any
            sampling without weights of its own) or ``"area"`` (block means, as
            ``upsample(sampling='area')`` receives them).

    Raises:
        ValueError: neither or both of file and url, a shipped file without sha256, a file that
            is not a bare file name (``../x.safetensors``, an absolute path), an empty model or
            tag, a tag with a ``.``, an unknown key_map or an unknown sampling.
    """

    model: str
    tag: str
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    file: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    licence: str = "Apache-2.0"
    recipe: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    key_map: str = "none"
    default: bool = False
    task: str = "depth"
    sampling: str = "center"

    def __post_init__(self) -> None:
        if not self.model or not self.tag or "." in self.tag:
            raise ValueError(f"weights {self.model!r}.{self.tag!r}: model and tag must be "
                             "non-empty, and the tag must not contain '.'")
        if (self.file is None) == (self.url is None):
            raise ValueError(f"weights {self.name!r}: give exactly one of file and url")
        if self.file is not None:
            if not _plain_file_name(self.file):
                raise ValueError(f"weights {self.name!r}: file must be a bare file name inside "
                                 f"the weights folder, got {self.file!r}")
            if not self.sha256:
                raise ValueError(f"weights {self.name!r}: a shipped file needs its sha256")
        if self.key_map not in _KEY_MAPS:
            raise ValueError(f"weights {self.name!r}: unknown key_map {self.key_map!r} "
                             f"(one of {_KEY_MAPS})")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"weights {self.name!r}: unknown sampling {self.sampling!r} "
                             f"(one of {SAMPLINGS})")
        kwargs = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in dict(self.model_kwargs).items()}
        object.__setattr__(self, "model_kwargs", MappingProxyType(kwargs))
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    @property
    def name(self) -> str:
        """``"<model>.<tag>"``: what ``create_model`` and ``list_pretrained`` use."""
        return f"{self.model}.{self.tag}"

    @property
    def factor(self) -> Optional[int]:
        """The upsampling factor the weights are for (None for models without one)."""
        return self.model_kwargs.get("factor")

    @property
    def shipped(self) -> bool:
        """Whether the file is inside the package."""
        return self.file is not None

    @property
    def non_commercial(self) -> bool:
        """Whether the licence forbids commercial use."""
        return "NC" in self.licence.replace("-", " ").split() or "non-commercial" in self.licence


# ---------------------------------------------------------------------------------------------
# the records

def shipped_dir() -> Path:
    """The folder of the weights shipped inside the package (and of their manifest)."""
    return Path(__file__).resolve().parent / "weights"


_FIELDS = {f for f in Weights.__dataclass_fields__}


def load_manifest(path: Union[str, Path]) -> list[Weights]:
    """Read a manifest file: ``{"format": 1, "records": [{...}, ...]}``.

    Raises:
        ValueError: not JSON, an unknown format, a record with unknown or missing fields, an
            invalid record (see :class:`Weights`), two records of one name, or two defaults for
            one model, factor and sampling.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"weights manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _MANIFEST_FORMAT:
        raise ValueError(f"weights manifest {path}: expected format {_MANIFEST_FORMAT}, got "
                         f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__}")
    records: list[Weights] = []
    for i, raw in enumerate(doc.get("records", [])):
        unknown = sorted(set(raw) - _FIELDS) if isinstance(raw, dict) else []
        if not isinstance(raw, dict) or unknown:
            raise ValueError(f"weights manifest {path}, record {i}: unknown fields {unknown}"
                             if unknown else f"weights manifest {path}, record {i}: not an "
                             "object")
        try:
            records.append(Weights(**raw))
        except TypeError as exc:
            raise ValueError(f"weights manifest {path}, record {i}: {exc}") from None
    _check_unique(records, str(path))
    return records


def _check_unique(records: Iterable[Weights], where: str) -> None:
    names: set[str] = set()
    defaults: dict[tuple[str, Optional[int], str], str] = {}
    for r in records:
        if r.name in names:
            raise ValueError(f"{where}: two records named {r.name!r}")
        names.add(r.name)
        if r.default:
            key = (r.model, r.factor, r.sampling)
            if key in defaults:
                raise ValueError(f"{where}: {defaults[key]!r} and {r.name!r} are both the "
                                 f"default of {r.model}" + (f" at factor {r.factor}"
                                                            if r.factor is not None else "")
                                 + f" for sampling {r.sampling!r}")
            defaults[key] = r.name


_WEIGHTS: dict[str, Weights] = {}
_MANIFEST_LOADED = False


def _records() -> dict[str, Weights]:
    """All records by name (the shipped manifest, read once, plus :func:`register_weights`)."""
    global _MANIFEST_LOADED
    if not _MANIFEST_LOADED:
        _MANIFEST_LOADED = True
        path = Path(__file__).resolve().parent / "weights" / MANIFEST
        if path.is_file():
            for r in load_manifest(path):
                _WEIGHTS.setdefault(r.name, r)
    return _WEIGHTS


def register_weights(record: Weights, *, replace: bool = False) -> Weights:
    """Add a record (for plugins and tests; the package's own records live in the manifest).

    Raises:
        ValueError: the name exists (and ``replace`` is False), or a second default for the
            same model, factor and sampling.
    """
    records = _records()
    if record.name in records and not replace:
        raise ValueError(f"weights {record.name!r} are already registered")
    others = [r for n, r in records.items() if n != record.name]
    _check_unique([*others, record], "register_weights")
    records[record.name] = record
    return record


def unregister_weights(name: str) -> None:
    """Remove a record (for tests and plugins)."""
    _records().pop(name, None)


def list_weights(model: Optional[str] = None, **model_kwargs: Any) -> list[Weights]:
    """Records, sorted by name; optionally of one model and with matching builder arguments."""
    out = [w for w in _records().values()
           if (model is None or w.model == model)
           and all(same_kwarg(v, w.model_kwargs.get(k)) for k, v in model_kwargs.items())]
    return sorted(out, key=lambda w: w.name)


def get_weights(name: str, model: Optional[str] = None) -> Weights:
    """The record named ``name`` (``"model.tag"``; with ``model`` given, a bare tag too).

    Raises:
        ValueError: unknown name (the message lists the records of that model, or all names).
    """
    records = _records()
    if isinstance(name, str):
        if name in records:
            return records[name]
        if model is not None and f"{model}.{name}" in records:
            return records[f"{model}.{name}"]
    mine = [n for n in sorted(records) if model is None or n.startswith(f"{model}.")]
    raise ValueError(f"unknown weights {name!r}; "
                     + (f"weights of {model}: " if model else "known: ")
                     + (", ".join(mine) or "none"))


def default_weights(model: str, factor: Optional[int] = None,
                    sampling: str = "center") -> Optional[Weights]:
    """The default record of ``model`` at ``factor`` (None: the model's factor-less default) for
    ``sampling``; a sampling without a default of its own gets the ``"center"`` default.

    Raises:
        ValueError: ``sampling`` is not one of :data:`SAMPLINGS`.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    mine = [w for w in _records().values()
            if w.default and w.model == model and w.factor == factor]
    return (next((w for w in mine if w.sampling == sampling), None)
            or next((w for w in mine if w.sampling == "center"), None))


def same_kwarg(given: Any, recorded: Any) -> bool:
    """Whether a builder argument ``given`` means the ``recorded`` value, the way the builders
    read them: a list equals the tuple of its items, and one int equals a tuple that repeats it
    (``reach=2`` and ``reach=[2, 2]`` both mean ``reach=(2, 2)``)."""
    def canonical(v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    def repeats(one: Any, many: Any) -> bool:
        return (isinstance(one, int) and not isinstance(one, bool) and isinstance(many, tuple)
                and len(many) > 0 and all(m == one for m in many))

    given, recorded = canonical(given), canonical(recorded)
    return given == recorded or repeats(given, recorded) or repeats(recorded, given)


# ---------------------------------------------------------------------------------------------
# files

def cache_dir() -> Path:
    """Download cache: ``<torch.hub.get_dir()>/checkpoints/pac_models``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / "pac_models"


def sha256sum(path: Union[str, Path]) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_url(s: str) -> bool:
    """Whether ``s`` is a URL :func:`download` fetches (http, https, ftp, file)."""
    return urlparse(s).scheme in ("http", "https", "file", "ftp")


def download(url: str, *, sha256: Optional[str] = None, progress: bool = True) -> Path:
    """Fetch ``url`` into :func:`cache_dir` (once) with :func:`torch.hub.download_url_to_file`.

    The cached file is ``<first 10 hex digits of sha256(url)>-<file name>``. A cached file whose
    sha256 does not match is fetched again; a fresh download that does not match is deleted and
    refused.

    Raises:
        ValueError: the downloaded file's sha256 differs from ``sha256``.
    """
    name = os.path.basename(unquote(urlparse(url).path)) or "checkpoint"
    # the URL's digest in the name: two URLs ending in the same file name never share a cache entry
    dst = cache_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:10]}-{name}"
    if dst.exists() and (sha256 is None or sha256sum(dst) == sha256):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), progress=progress)
    if sha256 is not None:
        got = sha256sum(dst)
        if got != sha256:
            dst.unlink()
            raise ValueError(f"sha256 mismatch for {url}: expected {sha256}, got {got}")
    return dst


def resolve_file(record: Weights, *, check_hash: bool = True, progress: bool = True) -> Path:
    """Local path of a record's file (downloading it if needed), hash-checked.

    Raises:
        ValueError: hash mismatch, no reference hash and ``check_hash`` is True, or a file that
            resolves outside the weights folder.
        FileNotFoundError: a shipped file is missing from the installation.
    """
    if check_hash and not record.sha256:
        raise ValueError(
            f"weights {record.name!r} have no known sha256 ({record.licence}); pass "
            "check_hash=False to load them unverified, or download the file yourself and pass "
            "its path as pretrained="
        )
    if record.shipped:
        folder = shipped_dir().resolve()
        path = (folder / str(record.file)).resolve()
        if path.parent != folder:  # a symlink or a name that leaves the folder
            raise ValueError(f"weights {record.name!r}: file {record.file!r} resolves to {path}, "
                             f"outside the weights folder {folder}")
        if not path.is_file():
            raise FileNotFoundError(f"shipped weights file missing: {path}")
    else:
        path = download(str(record.url), sha256=record.sha256 if check_hash else None,
                        progress=progress)
    if check_hash:
        got = sha256sum(path)
        if got != record.sha256:
            raise ValueError(
                f"sha256 mismatch for weights {record.name!r} ({path}): expected "
                f"{record.sha256}, got {got}"
            )
    return path


# ---------------------------------------------------------------------------------------------
# loading

def _looks_like_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    # 8-byte little-endian header length, then a JSON object
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 28


def _looks_like_torch_save(path: Path) -> bool:
    """A zip archive (``torch.save``'s format since 1.6) or a legacy pickle (protocol 2+)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as fh:
        head = fh.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def load_checkpoint(path: Union[str, Path], map_location: Any = "cpu") -> Any:
    """Read a checkpoint without running any code from it.

    Safetensors files are read with :func:`safetensors.torch.load_file`; ``torch.save`` files
    with ``torch.load(weights_only=True)``, whose restricted unpickler only rebuilds tensors and
    plain containers.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the pickle references other globals (it would run code); nothing
            from the file was executed.
        CheckpointError: a file that is not a checkpoint (text, an image...), or a truncated or
            corrupt one; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if _looks_like_safetensors(path):
        try:
            return _load_safetensors(str(path), device=str(map_location or "cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors checkpoint "
                                  f"(truncated or corrupt?): {exc}") from None
    if not _looks_like_torch_save(path):
        raise CheckpointError(f"{path} is not a checkpoint (neither safetensors nor a torch.save "
                              "file)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc) and "Unsupported global" not in str(exc):
            raise CheckpointError(f"{path} is not a readable checkpoint (truncated or "
                                  f"corrupt?): {exc}") from None
        raise UnsafeCheckpointError(
            f"refused to load {path}: its pickle contains objects other than tensors and plain "
            "containers, which could run code; pac-models only loads weights_only checkpoints "
            f"(re-save it as a plain state_dict or safetensors). Details: {exc}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError,
            zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(exc).__name__}: {exc}") from None


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def map_legacy_keys(obj: Any, expected: Iterable[str]) -> dict[str, Tensor]:
    """Turn a loaded checkpoint (possibly pacnet-style wrapped) into a state_dict for a model.

    Steps: unwrap ``{"state_dict": ...}``-like containers (``state_dict``, ``model_state_dict``,
    ``model``, ``net``, ``weights``; other entries such as optimiser state or epoch are dropped),
    strip a ``module.`` prefix (``nn.DataParallel``), and add or strip a common prefix (e.g.
    ``backbone.``) when that makes the keys match the model's.

    Args:
        obj: What :func:`load_checkpoint` returned.
        expected: The model's ``state_dict`` keys.

    Returns:
        A flat ``{key: tensor}`` dict.

    Raises:
        ValueError: no tensor dict inside ``obj``.
    """
    sd = obj
    for _ in range(3):
        if _tensor_dict(sd):
            break
        if isinstance(sd, Mapping):
            inner = next((sd[k] for k in _WRAPPER_KEYS if k in sd and isinstance(sd[k], Mapping)),
                         None)
            if inner is not None:
                sd = inner
                continue
            tensors = {k: v for k, v in sd.items() if isinstance(v, Tensor)}
            if tensors:
                sd = tensors
                break
        raise ValueError("the checkpoint holds no state_dict (no mapping of names to tensors)")
    if not _tensor_dict(sd):
        raise ValueError("the checkpoint holds no state_dict (no mapping of names to tensors)")
    sd = dict(sd)
    expected = set(expected)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if expected and not (set(sd) & expected):
        prefixes = {k.split(".", 1)[0] + "." for k in expected if "." in k}
        for p in prefixes:  # the file lacks a prefix every model key has (e.g. "backbone.")
            if all(k.startswith(p) for k in expected) and {p + k for k in sd} & expected:
                sd = {p + k: v for k, v in sd.items()}
                break
        else:
            file_prefixes = {k.split(".", 1)[0] + "." for k in sd if "." in k}
            for p in file_prefixes:  # the file has an extra prefix
                if all(k.startswith(p) for k in sd) and {k[len(p):] for k in sd} & expected:
                    sd = {k[len(p):]: v for k, v in sd.items()}
                    break
    return sd


def load_into(model: nn.Module, obj: Any, source: str) -> None:
    """Map keys and load strictly, with a clear message on any mismatch.

    Raises:
        ValueError: no state_dict in ``obj``, or missing, unexpected or wrongly shaped entries.
    """
    own = model.state_dict()
    try:
        sd = map_legacy_keys(obj, own.keys())
    except ValueError as exc:
        raise ValueError(f"checkpoint {source}: {exc}") from None
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(sd) & set(own)) if sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append(f"shape mismatches {shapes}")
        raise ValueError(
            f"checkpoint {source} does not fit {type(model).__name__}: " + "; ".join(parts)
        )
    model.load_state_dict(sd, strict=True)


def load_record(model: nn.Module, record: Weights, *, check_hash: bool = True,
                progress: bool = True) -> None:
    """Load a record's file into ``model`` (hash-checked, keys mapped, strict).

    Raises:
        ValueError: hash or key mismatch, an unreadable file.
    """
    if record.non_commercial:
        warnings.warn(f"weights {record.name!r} are licensed {record.licence}", stacklevel=3)
    path = resolve_file(record, check_hash=check_hash, progress=progress)
    load_into(model, load_checkpoint(path), record.name)


def load_file(model: nn.Module, source: Union[str, Path], *, check_hash: bool = True,
              progress: bool = True) -> None:
    """Load a user's file or URL into ``model`` (a URL of a known record is hash-checked).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: an unreadable or unsafe file, a key mismatch.
    """
    src = str(source)
    if is_url(src):
        known = next((w for w in _records().values() if w.url == src), None)
        path = download(src, sha256=known.sha256 if (known and check_hash) else None,
                        progress=progress)
    else:
        path = Path(src).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"pretrained={src!r} is neither a weights name, a URL nor an existing file"
            )
    load_into(model, load_checkpoint(path), src)


def save_weights(model_or_state: Union[nn.Module, Mapping[str, Tensor]],
                 path: Union[str, Path]) -> str:
    """Save a state_dict (safetensors for ``.safetensors`` paths, else ``torch.save``).

    Returns:
        The file's sha256 (for a :class:`Weights` record).
    """
    sd = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    sd = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        _save_safetensors(sd, str(path))
    else:
        torch.save(sd, path)
    return sha256sum(path)
