#!/usr/bin/env bash
# GPU check of pac-core's CUDA backend, for a lent GPU machine (H100/H200, CUDA 13 nvcc, python3 with
# a CUDA torch, scikit-build-core, pybind11, cmake, ninja, pytest preinstalled; no network).
#
# Run from anywhere inside the repository, with $OUT set to a folder for the results:
#     OUT=/some/dir bash packages/pac-bench/scripts/gpu_check.sh
# Steps (each time-boxed; the whole script stays well under 8 minutes):
#   1. build and install pac-core with PAC_CUDA=on           -> $OUT/build.log
#   2. pytest packages/pac-core/tests -m cuda                 -> $OUT/cuda-tests.log
#   3. python3 -m pac_bench.gpu --out $OUT                    -> $OUT/gpu-bench.{md,json}, bench.log
#   4. a short summary, printed last (also $OUT/summary.txt)
# Later steps run even if earlier tests fail; the benchmark is skipped only when the build failed.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
T_BUILD="${T_BUILD:-210}"     # seconds
T_TESTS="${T_TESTS:-140}"
T_BENCH="${T_BENCH:-80}"
export PYTHONPATH="$ROOT/packages/pac-bench/src${PYTHONPATH:+:$PYTHONPATH}"
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
export TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)"
export PYTHONDONTWRITEBYTECODE=1
T0=$SECONDS
stamp() { echo "[gpu_check +$((SECONDS - T0))s] $*"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  nvcc --version 2>&1 | tail -n 2
  "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())' 2>&1
  git -C "$ROOT" log --oneline -1 2>/dev/null || true
} | tee "$OUT/env.txt"

# 1. Build.
stamp "building pac-core (PAC_CUDA=on, TORCH_CUDA_ARCH_LIST=9.0) -> $OUT/build.log"
PAC_CUDA=on TORCH_CUDA_ARCH_LIST="9.0" CMAKE_BUILD_PARALLEL_LEVEL=16 \
  timeout "$T_BUILD" "$PY" -m pip install --no-build-isolation --no-deps -v "$ROOT/packages/pac-core" \
  2>&1 | tee "$OUT/build.log" | tail -n 3
BUILD_RC=${PIPESTATUS[0]}
if [ "$BUILD_RC" -ne 0 ]; then
  stamp "BUILD FAILED (rc=$BUILD_RC); last lines:"
  grep -E "error|Error|FAILED" "$OUT/build.log" | head -n 40
  tail -n 30 "$OUT/build.log"
fi

# Check that the installed extension (not a source tree) is imported and has CUDA kernels.
(cd "$OUT" && timeout 60 "$PY" - <<'EOF'
import torch, pac_core
from pac_core import _ext
info = _ext.build_info()
print("pac_core from", pac_core.__file__)
print("build_info", info, "| load error:", _ext.error())
print("backends", pac_core.backends.available())
ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pac::"))
missing = [n for n in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
print(f"{len(ops)} pac ops registered")
print("ops without a CUDA kernel:", missing or "none")
EOF
) 2>&1 | tee "$OUT/import-check.txt"

# 2. CUDA tests (run from $OUT so that the installed pac_core is imported).
TESTS_RC=-1
if [ "$BUILD_RC" -eq 0 ]; then
  stamp "running pytest -m cuda -> $OUT/cuda-tests.log"
  (cd "$OUT" && timeout "$T_TESTS" "$PY" -m pytest "$ROOT/packages/pac-core/tests" -m cuda -q \
      -p no:cacheprovider -rfE --tb=short --continue-on-collection-errors \
      --rootdir="$ROOT/packages/pac-core" 2>&1) | tee "$OUT/cuda-tests.log" | tail -n 25
  TESTS_RC=${PIPESTATUS[0]}
fi

# 3. Benchmark.
BENCH_RC=-1
if [ "$BUILD_RC" -eq 0 ]; then
  stamp "running python3 -m pac_bench.gpu -> $OUT/gpu-bench.md"
  (cd "$OUT" && timeout "$T_BENCH" "$PY" -m pac_bench.gpu --out "$OUT" --warmup 3 --iters 10 \
      --time-budget $((T_BENCH - 30)) 2>&1) > "$OUT/bench.log"
  BENCH_RC=$?
fi

# 4. Summary (last).
{
  echo "==================== pac gpu_check summary ===================="
  head -n 3 "$OUT/env.txt" | tail -n 2
  echo "build: rc=$BUILD_RC ($( [ "$BUILD_RC" -eq 0 ] && echo ok || echo FAILED; [ "$BUILD_RC" -eq 124 ] && echo ' timeout'))"
  grep -E "^build_info|pac ops registered|ops without" "$OUT/import-check.txt" 2>/dev/null
  echo "cuda tests: rc=$TESTS_RC: $(grep -E '(passed|failed|error|skipped|no tests ran)' "$OUT/cuda-tests.log" 2>/dev/null | tail -n 1)"
  grep -E "^(FAILED|ERROR) " "$OUT/cuda-tests.log" 2>/dev/null | head -n 15
  echo "benchmark: rc=$BENCH_RC (124 = timeout) -> $OUT/gpu-bench.md"
  if [ -f "$OUT/gpu-bench.md" ]; then
    grep -E "^\| b" "$OUT/gpu-bench.md" | awk -F'|' '{printf "  %-16s %-17s %-9s fwd %8s ms  fwd+bwd %8s ms  peak %8s MiB  vs cuDNN %6s %6s %s\n", $2, $3, $4, $6, $7, $9, $10, $11, $12}'
  else
    tail -n 15 "$OUT/bench.log" 2>/dev/null
  fi
  echo "total: $((SECONDS - T0)) s"
} 2>&1 | tee "$OUT/summary.txt"
exit 0
