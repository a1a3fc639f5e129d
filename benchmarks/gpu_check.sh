#!/usr/bin/env bash
# The GPU checks and measurements, as run on a lent H100/H200 machine (16 cores, no network).
# Wheels the machine lacks travel in .whl/ (rasterio and its small dependencies, typer and
# pydantic, faiss-cpu); fetch them for the machine's Python (3.12) with
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl rasterio typer pydantic faiss-cpu
# numba's llvmlite wheel (60 MB) does not fit the 64 MiB that travels with a run: there the CPU
# side of the GPU tests takes the engine's faiss fallback (exact too; one warning).
#   benchmarks/gpu_check.sh OUTDIR [--full]
set -uo pipefail
out=${1:-${OUT:-/tmp/rsir-gpu}}
full=${2:-}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, rasterio, typer; print('torch', torch.__version__, 'rasterio', rasterio.__version__, 'typer', typer.__version__)"
echo "== GPU tests"
timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_exact_search.py tests/test_cli_embed.py 2>&1 | tail -4
echo "== embedding throughput"
extra=(--no-compile)
[ "$full" = "--full" ] && extra=()
timeout 400 python3 benchmarks/embed.py --device cuda --e2e --patches 400 --repeats 1 --e2e-patches 30000 \
    --seconds 5 --workers 15 "${extra[@]}" --out "$out/embed_gpu.json" 2>&1 | grep -v "RANDOM WEIGHTS"
