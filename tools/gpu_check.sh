#!/usr/bin/env bash
# The prepared GPU check of issue 5, run in one call on a machine with an NVIDIA GPU:
#
#   bash tools/gpu_check.sh            # from the repository root (or anywhere)
#
# 1. the card and driver (nvidia-smi); CuPy from the machine, or installed with
#    `pip install -e '.[test,cuda12]'` / `'.[test,cuda13]'` (by the driver's CUDA version)
#    when it is missing and an index is reachable;
# 2. python -m pytest -q -m gpu  (reference cases, gradient checks, NumPy/CuPy training
#    agreement, cross-backend checkpoints, --backend auto);
# 3. python tools/bench.py --backend cupy --repeats 5, fp32 (TF32 off); the same with the
#    opt-in CUDA kernels (LAYERSPEC_CUPY_KERNELS=1, layerspec/gpukernels.py); then --tf32.
#
# Logs and the bench's JSON go to $OUT (the device tool's result folder) or ./gpu_check_out.
# Time limits per step (seconds): GPU_CHECK_PYTEST (240), GPU_CHECK_BENCH (150),
# GPU_CHECK_KERNELS (90), GPU_CHECK_TF32 (80); the whole script stays under 10 minutes. GPU_CHECK_BENCH_ARGS adds
# bench options (e.g. "--workloads lenet_mnist"). Exit status: 0 when every step passed, else 1.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
DEST=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
LOG="$DEST/gpu_check.log"
: >"$LOG"
say() { echo "== $*" | tee -a "$LOG"; }
status=0

say "card"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 \
        | tee -a "$LOG"
else
    say "no nvidia-smi here"
fi
cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -1)
extra=cuda12
if [ -n "$cuda" ] && [ "$cuda" -ge 13 ]; then extra=cuda13; fi
say "driver CUDA ${cuda:-unknown} -> extra [$extra]"

if "$PY" -c "import cupy, pytest, yaml, scipy" 2>/dev/null; then
    say "using the installed CuPy $("$PY" -c 'import cupy; print(cupy.__version__)')"
else
    say "pip install -e '.[test,$extra]'"
    "$PY" -m pip install -q -e ".[test,$extra]" 2>&1 | tail -5 | tee -a "$LOG"
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import numpy, sys
from layerspec.backend import cupy_status
ok, why = cupy_status()
print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}; {why}")
if ok:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"device 0: {props['name'].decode()}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
EOF
if ! "$PY" -c "from layerspec.backend import cupy_status; import sys; sys.exit(not cupy_status()[0])"; then
    say "CuPy cannot use a GPU here: the gpu tests would all skip; stopping"
    exit 1
fi

say "pytest -m gpu"
timeout "${GPU_CHECK_PYTEST:-240}" "$PY" -m pytest -q -m gpu -rs -p no:cacheprovider \
    --durations=8 2>&1 | tee "$DEST/pytest_gpu.txt" | tail -60
rc=${PIPESTATUS[0]}
pytest_rc=$rc
[ "$rc" -eq 0 ] || status=1
say "pytest exit $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')"

say "bench fp32 (TF32 off)"
# shellcheck disable=SC2086  # GPU_CHECK_BENCH_ARGS: extra bench options, word-split
timeout "${GPU_CHECK_BENCH:-150}" "$PY" tools/bench.py --backend cupy --repeats 5 \
    ${GPU_CHECK_BENCH_ARGS:-} --json "$DEST/bench_fp32.json" 2>&1 | tee "$DEST/bench_fp32.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || status=1
say "bench fp32 exit $rc"

say "bench fp32 with the CUDA kernels (LAYERSPEC_CUPY_KERNELS=1)"
# shellcheck disable=SC2086
LAYERSPEC_CUPY_KERNELS=1 timeout "${GPU_CHECK_KERNELS:-90}" "$PY" tools/bench.py --backend cupy \
    --repeats 3 --no-memory ${GPU_CHECK_BENCH_ARGS:-} --json "$DEST/bench_kernels.json" 2>&1 \
    | tee "$DEST/bench_kernels.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || status=1
say "bench kernels exit $rc"

say "bench --tf32"
# shellcheck disable=SC2086
timeout "${GPU_CHECK_TF32:-80}" "$PY" tools/bench.py --backend cupy --repeats 5 --tf32 \
    --no-memory ${GPU_CHECK_BENCH_ARGS:-} --json "$DEST/bench_tf32.json" 2>&1 | tee "$DEST/bench_tf32.txt"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || status=1
say "bench tf32 exit $rc"

{
    echo
    echo "================ summary ================"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
    echo "pytest -m gpu (exit $pytest_rc): $(grep -E '(passed|failed|error|skipped)' "$DEST/pytest_gpu.txt" \
        | grep -E ' in [0-9.]+s' | tail -1)"
    echo "--- fp32 (TF32 off)"
    grep -E '^\||^# ms' "$DEST/bench_fp32.txt" 2>/dev/null
    echo "--- fp32 with the CUDA kernels"
    grep -E '^\|' "$DEST/bench_kernels.txt" 2>/dev/null
    echo "--- TF32"
    grep -E '^\|' "$DEST/bench_tf32.txt" 2>/dev/null
    echo "overall: $([ $status -eq 0 ] && echo OK || echo FAILED)"
} | tee -a "$LOG"
exit $status
