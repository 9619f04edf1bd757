#!/usr/bin/env bash
# Check of pac-core's CUDA backend on a machine with an NVIDIA GPU, in one call:
#     OUT=/some/dir bash packages/pac-bench/scripts/gpu_check.sh
# Needs nvcc, python3 with a CUDA build of torch, scikit-build-core, pybind11, cmake, ninja and
# pytest (pytest-xdist optional) already installed: pip runs without an index, so it also works on
# a machine without network access. TORCH_CUDA_ARCH_LIST picks the GPU architecture (default 9.0,
# H100/H200); PYTHON the interpreter (default python3).
# Steps (each time-boxed; the whole script stays within GPU_CHECK_BUDGET, default 560 s):
#   1. build and install pac-core with PAC_CUDA=on
#   2. check that every pac op has a CUDA kernel and that a bad argument raises a clear error
#   3. the triton backend's tests (test_triton.py) on the GPU when Triton imports
#   4. python3 -m pac_bench.gpu at three TF32 policies (strict, tf32, default) in float32, and in
#      bfloat16 (default policy); peers cuDNN, triton (forward and backward fused), native
#      (+ reference in strict, + triton-nativebwd in default float32: the triton forward with
#      native's backward)
#   5. pytest -m cuda: pac-core (4 xdist workers when available, so that a crash names its test
#      and the others still run)
#   6. a kernel-time profile of the native forward (1x64x512x512, scripts/gpu_profile.py)
#   7. pytest -m cuda of pac-models, time permitting
# Everything is written under a temporary folder w/, packed into $OUT/gpu-check.tgz after every
# step (so a killed run still leaves its logs); $OUT/summary.txt is printed last.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-$ROOT/gpu-check-out}"
W="$(mktemp -d)/w"
mkdir -p "$W" "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT/packages/pac-bench/src${PYTHONPATH:+:$PYTHONPATH}"
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INDEX=1
export TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
T0=$SECONDS
stamp() { echo "[gpu_check +$((SECONDS - T0))s] $*" | tee -a "$W/steps.txt"; }
# Every step after the build is capped so the whole run ends within GPU_CHECK_BUDGET seconds
# (default 560, under a 10-minute device call); steps that no longer fit are skipped and say so.
BUDGET="${GPU_CHECK_BUDGET:-560}"
cap() { local want=$1 left=$((BUDGET - (SECONDS - T0) - 15)); [ "$left" -lt "$want" ] && want=$left; echo "$want"; }
pack() { tar -C "$(dirname "$W")" -czf "$OUT/gpu-check.tgz" w 2>/dev/null; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  nvcc --version 2>&1 | tail -n 2
  echo "c++: $(command -v c++) $(c++ --version 2>&1 | head -n 1)"
  "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())' 2>&1
  git -C "$ROOT" log --oneline -1 2>/dev/null || true
} > "$W/env.txt" 2>&1
cat "$W/env.txt"

# 1. Build.
stamp "build"
PAC_CUDA=on TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" CMAKE_BUILD_PARALLEL_LEVEL=16 \
  timeout 200 "$PY" -m pip install --no-build-isolation --no-deps -v "$ROOT/packages/pac-core" \
  > "$W/build.log" 2>&1
BUILD_RC=$?
[ "$BUILD_RC" -ne 0 ] && { grep -E "error|FAILED" "$W/build.log" | head -n 30; tail -n 20 "$W/build.log"; }
SO=$("$PY" -c 'import pac_core._C as m; print(m.__file__)' 2>/dev/null)
{
  echo "extension: $SO"
  echo "libstdc++ symbols defined in it: $(nm -D --defined-only "$SO" 2>/dev/null | c++filt | grep -c 'std::')"
  ldd "$SO" 2>/dev/null | grep -E "stdc|cudart"
} >> "$W/env.txt"
pack

# 2. Import check: every op has a CUDA kernel; a bad argument (wrong phi shape) raises.
stamp "import and error check"
(cd "$W" && timeout 60 "$PY" - <<'PY'
import torch, pac_core
from pac_core import _ext
print("build_info", _ext.build_info(), "| load error:", _ext.error())
ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pac::"))
missing = [n for n in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
print(f"{len(ops)} pac ops registered; ops without a CUDA kernel: {missing or 'none'}")
d = "cuda"
x, g = torch.randn(2, 4, 7, 9, device=d), torch.randn(2, 3, 7, 9, device=d)
phi, w = torch.randn(2, 3, 6, 9, device=d), torch.randn(6, 4, 3, 3, device=d)
try:
    torch.ops.pac.conv2d_guided(x, g, phi, w, None, None, None, *[[1, 1]] * 6, 1, 0, False)
    print("phi_shape: NO ERROR")
except RuntimeError as e:
    print("phi_shape raises:", str(e).splitlines()[0][:160])
PY
) > "$W/import-check.txt" 2>&1
echo "import check rc=$?" >> "$W/import-check.txt"
cat "$W/import-check.txt"
pack

TESTS_RC=-1
MODELS_RC=-1
XDIST=""
"$PY" -c "import xdist" 2>/dev/null && XDIST="-n 4"
# 3. The triton backend's tests on the GPU.
TRITON_RC=-1
if [ "$(cap 150)" -ge 30 ] && "$PY" -c "import triton" 2>/dev/null; then
  stamp "pytest test_triton.py (triton backend on the GPU)"
  # xdist workers compile the many kernel variants (forward and backward) in parallel.
  (cd "$W" && timeout "$(cap 150)" "$PY" -m pytest "$ROOT/packages/pac-core/tests/test_triton.py" -q \
      $XDIST -p no:cacheprovider -rfEs --tb=short --rootdir="$ROOT/packages/pac-core" \
      > "$W/triton-tests.log" 2>&1)
  TRITON_RC=$?
  tail -n 4 "$W/triton-tests.log"
  pack
fi

# 4. Benchmarks.
if [ "$BUILD_RC" -eq 0 ]; then
  for run in strict:float32 tf32:float32 default:float32 default:bfloat16; do
    prec="${run%%:*}" dtype="${run##*:}"
    tag="$prec"; [ "$dtype" != float32 ] && tag="$prec-$dtype"
    [ "$(cap 100)" -lt 30 ] && { stamp "benchmark $run skipped: time budget"; continue; }
    peers="cudnn triton native"
    [ "$prec" = strict ] && peers="cudnn triton native reference"
    # Once: the triton forward with native's backward, beside the fused Triton backward.
    [ "$run" = default:float32 ] && peers="cudnn triton triton-nativebwd native"
    stamp "benchmark precision=$prec dtype=$dtype ($peers)"
    (cd "$W" && timeout "$(cap 120)" "$PY" -m pac_bench.gpu --out "$W" --warmup 3 --iters 10 \
        --precision "$prec" --dtype "$dtype" --tag "$tag" --peers $peers --time-budget 80 \
        > "$W/bench-$tag.log" 2>&1)
    echo "bench $tag rc=$?" >> "$W/steps.txt"
    pack
  done
fi

# 5. pac-core CUDA tests.
if [ "$BUILD_RC" -eq 0 ] && [ "$(cap 170)" -ge 30 ]; then
  stamp "pytest -m cuda (pac-core) $XDIST"
  (cd "$W" && timeout "$(cap 170)" "$PY" -m pytest "$ROOT/packages/pac-core/tests/test_cuda.py" -m cuda -q \
      $XDIST -p no:cacheprovider -rfEs --tb=short --rootdir="$ROOT/packages/pac-core" \
      > "$W/cuda-tests.log" 2>&1)
  TESTS_RC=$?
  tail -n 4 "$W/cuda-tests.log"
  pack
fi

# 6. Profile.
if [ "$BUILD_RC" -eq 0 ] && [ "$(cap 60)" -ge 20 ]; then
  stamp "profile"
  (cd "$W" && timeout "$(cap 60)" "$PY" "$ROOT/packages/pac-bench/scripts/gpu_profile.py" > "$W/profile.txt" 2>&1)
  pack
fi

# 7. pac-models CUDA tests (time permitting).
if [ "$BUILD_RC" -eq 0 ] && [ "$(cap 140)" -ge 60 ]; then
  stamp "pytest -m cuda (pac-models)"
  timeout 40 "$PY" -m pip install -q --no-build-isolation --no-deps -e "$ROOT/packages/pac-models" \
    > "$W/models-install.log" 2>&1
  (cd "$W" && timeout "$(cap 100)" "$PY" -m pytest "$ROOT/packages/pac-models/tests/test_cuda.py" -m cuda -q \
      $XDIST -p no:cacheprovider -rfEs --tb=short --rootdir="$ROOT/packages/pac-models" \
      > "$W/models-cuda-tests.log" 2>&1)
  MODELS_RC=$?
  pack
fi

# Summary (last).
{
  echo "==================== pac gpu_check summary ===================="
  sed -n 2,3p "$W/env.txt"; grep -E "^c\+\+|libstdc|extension" "$W/env.txt"
  echo "build: rc=$BUILD_RC"
  grep -E "ops registered|phi_shape" "$W/import-check.txt"
  echo "pac-core cuda tests: rc=$TESTS_RC: $(tail -n 1 "$W/cuda-tests.log" 2>/dev/null)"
  grep -E "^(FAILED|ERROR)|crashed|worker" "$W/cuda-tests.log" 2>/dev/null | head -n 12
  echo "pac-core triton tests: rc=$TRITON_RC: $(tail -n 1 "$W/triton-tests.log" 2>/dev/null)"
  grep -E "^(FAILED|ERROR)" "$W/triton-tests.log" 2>/dev/null | head -n 8
  echo "pac-models cuda tests: rc=$MODELS_RC: $(tail -n 1 "$W/models-cuda-tests.log" 2>/dev/null)"
  grep -E "^(FAILED|ERROR)|crashed" "$W/models-cuda-tests.log" 2>/dev/null | head -n 8
  for prec in strict tf32 default default-bfloat16; do
    f="$W/gpu-bench-$prec.md"
    echo "benchmark $prec:"
    if [ -f "$f" ]; then
      grep -E "^\| b" "$f" | grep -v reference | awk -F'|' '{printf "  %-15s %-16s %-7s fwd %7s ms  f+b %7s ms  peak %7s/%7s MiB  x%s %s\n", $2, $3, $4, $6, $7, $8, $9, $10, $11}'
    else
      tail -n 3 "$W/bench-$prec.log" 2>/dev/null
    fi
  done
  grep -E "tf32=|sgemm|copy" "$W/profile.txt" 2>/dev/null
  echo "total: $((SECONDS - T0)) s"
} 2>&1 | tee "$W/summary.txt"
cp "$W/summary.txt" "$OUT/summary.txt"
pack
exit 0
