#!/usr/bin/env bash
# Issue 14's GPU measurements in one call, for a machine with an NVIDIA GPU and JAX (CUDA)
# installed, nothing fetched: the workload-A train step (T=100/B=32 and T=500/B=64, bss2jax
# dense and event inputs against the hand-written scan, spyx and jaxsnn if importable), the
# Open Neuromorphic shape (Linear n -> n + LIF, B 16, T 500, n up to 16,384, against spyx),
# and the chip model's throughput. Each JSON lands in $OUT (default /tmp/bss2jax-gpu).
#
# Peers travel as wheels (no network there): in the repo root here,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl spyx==1.0.0 jax-tqdm nir
# then on the GPU machine (device tool: carry [".whl"]):  bash benchmarks/gpu.sh
set -uo pipefail
OUT=${OUT:-/tmp/bss2jax-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c \
  "import jax; print(jax.__version__, jax.devices())"; } > "$OUT/device.txt" 2>&1
run() {  # run NAME TIMEOUT_S COMMAND...: one measurement, its log beside its JSON
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" --output "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "   rc=$? ($(tail -c 300 "$OUT/$name.log" | tr '\n' ' '))"
}
run train_step_T100 150 $PY benchmarks/train_step.py --repeats 30
run train_step_T500 150 $PY benchmarks/train_step.py --time 500 --batch 64 --repeats 15
run open_neuromorphic 240 $PY benchmarks/open_neuromorphic.py --sizes 1024,4096,16384 --rounds 7
run chip_throughput 120 $PY benchmarks/chip_throughput.py --run --grad --batch 1000 --repeats 7
