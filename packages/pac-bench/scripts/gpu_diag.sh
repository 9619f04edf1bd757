#!/usr/bin/env bash
# Follow-up device check: build, each bad-argument call of test_errors_are_clear in its own
# process (so a crash names the case; a crashing case is rerun under cuda-gdb for a backtrace),
# the cuda tests minus that one, and a profile of where the native forward spends its time.
set -u -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"; cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-diag-out}"; mkdir -p "$OUT"
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_INDEX=1 TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)" PYTHONUNBUFFERED=1
T0=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; python3 -c 'import torch; print("torch", torch.__version__)'
PAC_CUDA=on TORCH_CUDA_ARCH_LIST=9.0 CMAKE_BUILD_PARALLEL_LEVEL=16 timeout 240 \
  python3 -m pip install -v --no-build-isolation --no-deps packages/pac-core > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build done +$((SECONDS - T0))s"
cat > "$OUT/case.py" <<'PY'
import sys, torch, pac_core, pac_core._C
c = sys.argv[1]; d = "cuda"
x = torch.randn(2, 4, 7, 9, device=d); g = torch.randn(2, 3, 7, 9, device=d)
phi = torch.randn(2, 3, 7, 9, device=d); w = torch.randn(6, 4, 3, 3, device=d); b = None
geo = [[1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1]]; kt = 0
if c == "weight_cpu": w = w.cpu()
if c == "guidance_cpu": g = g.cpu()
if c == "phi_cpu": phi = phi.cpu()
if c == "half": x, g, phi, w = x.half(), g.half(), phi.half(), w.half()
if c == "phi_shape": phi = phi[:, :, 1:]
if c == "inv_missing": kt = 1
if c == "bias_cpu": b = torch.zeros(6)
if c == "ok": pass
print("calling", c, flush=True)
try:
    torch.ops.pac.conv2d_guided(x, g, phi, w, b, None, None, *geo, 1, kt, False)
    print(c, "NO ERROR")
except Exception as e:
    print(c, "->", type(e).__name__, str(e).splitlines()[0][:150])
PY
cd "$OUT"
for case in ok weight_cpu guidance_cpu phi_cpu half phi_shape inv_missing bias_cpu; do
  timeout 60 python3 case.py "$case" > "case-$case.log" 2>&1; rc=$?
  echo "$case rc=$rc: $(tail -n 1 case-$case.log)"
  if [ $rc -ge 128 ] && [ ! -f gdb.log ]; then
    timeout 80 cuda-gdb -batch -ex run -ex bt -ex "info sharedlibrary pac" --args python3 case.py "$case" > gdb.log 2>&1
    grep -E "^#|signal|SIG" gdb.log | head -40
  fi
done
echo "diag done +$((SECONDS - T0))s"
timeout 160 python3 -m pytest "$ROOT/packages/pac-core/tests/test_cuda.py" -m cuda -q -p no:cacheprovider \
  -rfE --tb=line --deselect "$ROOT/packages/pac-core/tests/test_cuda.py::test_errors_are_clear" \
  --rootdir="$ROOT/packages/pac-core" > "$OUT/cuda-tests.log" 2>&1
echo "pytest rc=$? +$((SECONDS - T0))s"; grep -E "^(FAILED|ERROR)" "$OUT/cuda-tests.log" | head -20; tail -n 2 "$OUT/cuda-tests.log"
timeout 90 python3 "$ROOT/packages/pac-bench/scripts/gpu_profile.py" > "$OUT/profile.txt" 2>&1
echo "profile rc=$? +$((SECONDS - T0))s"; grep -E "tf32|sgemm|copy|===|Self CUDA time" "$OUT/profile.txt"
