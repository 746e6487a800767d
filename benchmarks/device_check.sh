#!/usr/bin/env bash
# The one GPU check, for a session that is lent a GPU (the `device` tool runs it from the repo
# root on a machine whose python3 already has torch, timm and einops; nothing is installed):
#     bash benchmarks/device_check.sh
# Writes $OUT/gpu.log, $OUT/gpu.json (all sections) and $OUT/gpu_compile.json (training with
# torch.compile). About 7-9 minutes on an H100: give it timeout_s=560 and paste the markdown
# tables it prints into benchmarks/RESULTS.md with the card's name.
# If the device's timm is older than 1.0 (our models use timm.layers), carry a wheel: here,
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: -d .whl "timm>=1.0"
# and call the device tool with carry=[".whl"]: the wheels found there are installed first.
set -o pipefail
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/hdvit_device_out}
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
} 2>&1 | tee "$OUT/gpu.log"
timeout 400 python3 benchmarks/gpu.py --out "$OUT/gpu.json" 2>&1 | tee -a "$OUT/gpu.log"
timeout 120 python3 benchmarks/gpu.py --sections train --compile --steps 10 --out "$OUT/gpu_compile.json" 2>&1 \
  | tee -a "$OUT/gpu.log"
