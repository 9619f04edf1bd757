"""The build backend of pac-core: scikit-build-core, after a few checks that fail early and clearly.

pac-core's native extension is compiled against the torch it will run with. Before handing the
build to ``scikit_build_core.build`` this backend

* finds that torch: importable as is (a build without build isolation), or else installed in the
  environment being installed into (pip's isolated build environment hides it; it is never
  installed into the build environment, so the extension is never built against another torch);
  no torch, or one older than 2.1, stops the build with a message naming the commands that work;
* checks that a C++ compiler works; without one (or with ``PAC_NATIVE=off``) pac-core installs as
  pure Python and runs on its ``reference`` backend;
* turns a missing build tool (``scikit-build-core``, ``pybind11``, ``cmake`` in a build without
  build isolation) into one message instead of a traceback.

``PAC_NATIVE`` (environment): ``auto`` (default: native when a compiler works, else pure Python),
``on`` (native or fail), ``off`` (pure Python). The decision reaches CMake as ``PAC_NATIVE`` and
``PAC_NATIVE_REASON``; the torch found outside the build environment as ``PAC_TORCH_SITE``.

``PAC_STABLE_ABI`` (environment): ``auto`` (default: LibTorch's stable ABI on torch >= 2.10, so
that one build serves every torch from 2.10 on, as an abi3 wheel; torch's C++ API, one build per
torch release, on older torch), ``on`` or ``off``. It reaches CMake as ``PAC_STABLE_ABI``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Optional

ConfigSettings = Optional[dict[str, Any]]

MIN_TORCH = (2, 1)
#: The oldest torch whose stable ABI the native operators are built on (TORCH_TARGET_VERSION).
STABLE_TORCH = (2, 10)
#: The oldest Python of the abi3 module of a stable-ABI build (Py_LIMITED_API in CMakeLists.txt).
STABLE_PY_API = "cp39"
BUILD_REQUIREMENTS = "'scikit-build-core>=0.10' 'pybind11>=2.12' 'cmake>=3.26' ninja"
#: The compilers CMake tries, in its order, when ``CXX`` is not set.
_CXX_CANDIDATES = ("c++", "g++", "clang++")


def _source() -> str:
    return os.getcwd()  # PEP 517: hooks run in the source tree


def _fix_commands() -> str:
    src = shlex.quote(_source())
    return (
        "Install torch first, then pac-core:\n"
        "    pip install torch\n"
        f"    pip install {src}\n"
        "or build with this environment's own build tools (no build isolation):\n"
        f"    pip install {BUILD_REQUIREMENTS}\n"
        f"    pip install --no-build-isolation {src}\n"
        "or install pac-core as pure Python (the 'reference' backend only):\n"
        f"    PAC_NATIVE=off pip install {src}"
    )


def _stop(what: str, fix: Optional[str] = None) -> SystemExit:
    """The one message a failed check prints (pip shows it under 'did not run successfully')."""
    return SystemExit(f"\npac-core: {what}\n\n{fix or _fix_commands()}\n")


def _note(text: str) -> None:
    print(f"pac-core: {text}", file=sys.stderr, flush=True)


def _skbuild() -> Any:
    try:
        import scikit_build_core.build as backend
    except ImportError:
        raise _stop(
            "the build needs scikit-build-core, which is not installed in this environment (a "
            "build without build isolation uses the environment's own packages).",
            f"Install the build requirements, then build again:\n    pip install "
            f"{BUILD_REQUIREMENTS}\n    pip install --no-build-isolation {shlex.quote(_source())}",
        ) from None
    return backend


def _mode() -> str:
    mode = os.environ.get("PAC_NATIVE", "auto").strip().lower() or "auto"
    if mode not in ("auto", "on", "off"):
        raise _stop(f"PAC_NATIVE must be auto, on or off, got {mode!r}.", "")
    return mode


def _stable_abi(torch_release: tuple[int, ...], version: str) -> bool:
    """Whether the native operators are built on the stable ABI (``PAC_STABLE_ABI``)."""
    mode = os.environ.get("PAC_STABLE_ABI", "auto").strip().lower() or "auto"
    if mode not in ("auto", "on", "off"):
        raise _stop(f"PAC_STABLE_ABI must be auto, on or off, got {mode!r}.", "")
    if mode == "on" and torch_release < STABLE_TORCH:
        raise _stop(f"PAC_STABLE_ABI=on, but torch {version} predates the stable ABI "
                    f"(torch >= {STABLE_TORCH[0]}.{STABLE_TORCH[1]}).",
                    "Unset PAC_STABLE_ABI: older torch gets a build for its own release.")
    return mode == "on" or (mode == "auto" and torch_release >= STABLE_TORCH)


def _outside_env() -> dict[str, str]:
    """The environment of a plain ``python`` run: without pip's build-isolation overlay."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONNOUSERSITE"):
        env.pop(name, None)
    return env


def _torch_site() -> Optional[str]:
    """Where torch is: ``""`` when importable as is, else the site directory of the environment
    being installed into that holds it, or None when there is none."""
    if importlib.util.find_spec("torch") is not None:
        return ""
    code = ("import importlib.util, os; s = importlib.util.find_spec('torch'); "
            "print(os.path.dirname(os.path.dirname(s.origin)) if s and s.origin else '')")
    out = subprocess.run([sys.executable, "-c", code], env=_outside_env(), capture_output=True,
                         text=True, check=False)
    site = out.stdout.strip()
    return site if out.returncode == 0 and site else None


def _torch_version(site: str) -> str:
    """Import torch as CMake will (the build environment first, then ``site``); its version."""
    code = "import sys; sys.path.extend(sys.argv[1:]); import torch; print(torch.__version__)"
    out = subprocess.run([sys.executable, "-c", code, *([site] if site else [])],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise _stop(f"torch{' in ' + site if site else ''} does not import:\n"
                    f"{out.stderr.strip()[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def _cxx_problem() -> Optional[str]:
    """None when a C++17 compiler compiles a test file, else what went wrong (one line)."""
    if os.environ.get("CXX"):
        cxx = shlex.split(os.environ["CXX"])
        where = "CXX=" + os.environ["CXX"]
    else:
        found = next((shutil.which(c) for c in _CXX_CANDIDATES if shutil.which(c)), None)
        if found is None:
            return f"no C++ compiler on PATH (looked for {', '.join(_CXX_CANDIDATES)})"
        cxx, where = [found], found
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.cpp")
        with open(src, "w") as f:
            f.write("#include <vector>\nint main() { std::vector<int> v{1}; return v[0] - 1; }\n")
        cmd = [*cxx, "-std=c++17", "-c", src, "-o", os.path.join(tmp, "probe.o")]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the C++ compiler ({where}) did not run: {exc}"
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[0]
        return f"the C++ compiler ({where}) failed on a test file: {first}"
    return None


def _safe(text: str) -> str:
    """``text`` as one line CMake and a Python string literal carry unchanged."""
    return re.sub(r"[^\w .,:=()/+@-]", "?", text)[:300]


def _settings(config_settings: ConfigSettings, **defines: str) -> dict[str, Any]:
    settings = dict(config_settings or {})
    for name, value in defines.items():
        settings[f"cmake.define.{name}"] = value
    return settings


def _plan(config_settings: ConfigSettings) -> dict[str, Any]:
    """The checks; the config settings for scikit-build-core (native or pure-Python build)."""
    mode = _mode()
    if mode == "off":
        _note("PAC_NATIVE=off: installing pure Python (the 'reference' backend only)")
        return _pure(config_settings, "PAC_NATIVE=off")
    site = _torch_site()
    if site is None:
        raise _stop("no torch found in this environment. The native extension is compiled "
                    "against the torch it will run with, so torch must be installed first.")
    version = _torch_version(site)
    found = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if found < MIN_TORCH:
        raise _stop(f"torch {version} found; pac-core needs torch >= 2.1.",
                    "Upgrade torch (pip install -U torch), then install pac-core again.")
    problem = _cxx_problem()
    if problem is not None:
        if mode == "on":
            raise _stop(f"PAC_NATIVE=on, but {problem}.",
                        "Install a C++17 compiler (e.g. g++), or unset PAC_NATIVE to install "
                        "pure Python.")
        _note(f"{problem}: installing pure Python (the 'reference' backend only). To build the "
              "native extension, install a C++17 compiler and reinstall pac-core.")
        return _pure(config_settings, f"no working C++ compiler: {problem}")
    missing = [name for name in ("pybind11",) if importlib.util.find_spec(name) is None]
    if shutil.which("cmake") is None and importlib.util.find_spec("cmake") is None:
        missing.append("cmake")
    if missing:
        raise _stop(f"the build needs {' and '.join(missing)}, not installed in this environment.",
                    f"Install the build requirements, then build again:\n    pip install "
                    f"{BUILD_REQUIREMENTS}\n    pip install --no-build-isolation "
                    f"{shlex.quote(_source())}")
    stable = _stable_abi(found, version)
    _note(f"building the native extension against torch {version}"
          f"{' from ' + site if site else ''}"
          + (f" on the stable ABI (for torch >= {STABLE_TORCH[0]}.{STABLE_TORCH[1]})" if stable
             else f" (for torch {version} only)"))
    defines = {"PAC_NATIVE": "ON", "PAC_STABLE_ABI": "ON" if stable else "OFF"}
    if site:
        defines["PAC_TORCH_SITE"] = site
    settings = _settings(config_settings, **defines)
    if stable:
        settings.setdefault("wheel.py-api", STABLE_PY_API)  # one abi3 module for every Python
    return settings


def _pure(config_settings: ConfigSettings, reason: str) -> dict[str, Any]:
    settings = _settings(config_settings, PAC_NATIVE="OFF", PAC_NATIVE_REASON=_safe(reason))
    settings["wheel.platlib"] = "false"  # a py3-none-any wheel
    return settings


# -- PEP 517 / 660 hooks --------------------------------------------------------------------------
# No prepare_metadata_for_build_wheel/_editable: the wheel's tags depend on the checks (a
# pure-Python build is py3-none-any), so frontends take the metadata from the built wheel.
def build_wheel(wheel_directory: str, config_settings: ConfigSettings = None,
                metadata_directory: Optional[str] = None) -> str:
    backend = _skbuild()
    return backend.build_wheel(wheel_directory, _plan(config_settings), metadata_directory)


def build_editable(wheel_directory: str, config_settings: ConfigSettings = None,
                   metadata_directory: Optional[str] = None) -> str:
    backend = _skbuild()
    return backend.build_editable(wheel_directory, _plan(config_settings), metadata_directory)


def build_sdist(sdist_directory: str, config_settings: ConfigSettings = None) -> str:
    return _skbuild().build_sdist(sdist_directory, config_settings)


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    return _skbuild().get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    return _skbuild().get_requires_for_build_editable(config_settings)


def get_requires_for_build_sdist(config_settings: ConfigSettings = None) -> list[str]:
    return _skbuild().get_requires_for_build_sdist(config_settings)

