#!/usr/bin/env bash
# One short check for a machine with a GPU (or several): run it whenever one is at hand and
# put its figures in the README's "Scaling" section. About 5 minutes on one H200.
#   bash benchmarks/gpu_check.sh            # installs fmjax[cuda12] into .venv when missing
# Prints JSON lines; the last table is bench_scale's (every device count of this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s install EXTRAS=test,cuda12 >/dev/null
PY=.venv/bin/python
$PY -c "import jax; print('backend', jax.default_backend(), jax.devices())"
# ResNet20 epoch at batch 128, the 50,000-example Fisher pass on both paths and 'auto',
# and the host's overhead per step.
$PY benchmarks/gpu_check.py --n 50000 --batch 128 --steps 100
# The Fisher and training over 1, 2, 4, ... of this machine's devices, K = 1, 3, 9 stacked
# fine-tuning units on one device, and the Fisher's peak
# device memory at N = 1k, 4k, 16k.
$PY benchmarks/bench_scale.py --cpu-devices 0 --n 8192 --batch 128 --chunk 256
