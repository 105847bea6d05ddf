"""Seconds per optimization step at the reference settings: ours vs a loop built like the reference code.

Settings: a 512x512 photo, 64 crops of 128 px, CLIP ViT-B/32 architecture
with random weights (cost does not depend on weight values), the bundled
VGG16 content loss. Each path runs in its own subprocess so peak memory is
its own. Prints a table and writes JSON (default benchmarks/bench_step.json).

    python benchmarks/bench_step.py                 # CPU, ours at auto precision
    python benchmarks/bench_step.py --device cuda   # GPU
    python benchmarks/bench_step.py --precisions auto --clip-model open_clip:ViT-B-16-SigLIP \
        --clip-model openai:ViT-B/32 --clip-model open_clip:ViT-B-32   # per backend, then their ensemble

With ``--clip-model`` (repeatable), ours is also timed with each named encoder
alone and, for two or more, with all of them as an equal-weight ensemble.
Every encoder has random weights at its real architecture's size:
``openai:ViT-B/32`` is clip's own model class, ``open_clip:ARCH`` open_clip's
(SigLIP with mean/std 0.5; its text side only runs once, before the timing).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clipstyle_opt import StyleConfig  # noqa: E402
from clipstyle_opt.config import clip_batch_for  # noqa: E402
from clipstyle_opt.objective.augment import sample_crop_params  # noqa: E402
from clipstyle_opt.training.captured import CapturedStep, captured_optimizer  # noqa: E402
from clipstyle_opt.devices import (cpu_model, precision_name, resolve_device, resolve_precision,  # noqa: E402
                                   reuse_freed_cpu_memory)
from clipstyle_opt.encoders.clip import ClipEncoder  # noqa: E402
from clipstyle_opt.encoders.vgg import load_vgg  # noqa: E402
from clipstyle_opt.unet.model import seeded_unet  # noqa: E402
from clipstyle_opt.imageio import load_image, resize  # noqa: E402
from clipstyle_opt.objective.style_objective import StyleObjective  # noqa: E402
from clipstyle_opt.objective.terms import TERM_NAMES  # noqa: E402
from clipstyle_opt.testing import RANDOM_CLIP_SIZES, CLIP  # noqa: E402

PHOTO = ROOT / "examples" / "astronaut.png"
PROMPT = "a watercolor painting"


class Sections:
    """Accumulates wall time per named stage; synchronizes CUDA around each."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def __call__(self, name: str):
        self._sync()
        started = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] += time.perf_counter() - started


def random_vit_b32(device: torch.device) -> CLIP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return CLIP(*RANDOM_CLIP_SIZES["ViT-B/32"]).float().to(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def setup(device: torch.device, size: int):
    config = StyleConfig(size=size, device=device.type)
    content = resize(load_image(PHOTO), (size, size)).to(device)
    vgg = load_vgg("vgg16", (*config.content_layers, *config.style_layers), device)
    return config, content, vgg


# --- ours --------------------------------------------------------------------

def random_encoder(model: str, device: torch.device):
    """An encoder with random weights at the real architecture's size: ``openai:ViT-B/32`` or ``open_clip:ARCH``."""
    if model in ("openai:ViT-B/32", "ViT-B/32"):
        return ClipEncoder(random_vit_b32(device), name="openai:ViT-B/32 (random)").to(device)
    if not model.startswith("open_clip:"):
        sys.exit(f"--clip-model {model!r}: the benchmark builds openai:ViT-B/32 or open_clip:ARCH with random weights")
    from clipstyle_opt.encoders.openclip import OpenClipEncoder, import_open_clip

    open_clip = import_open_clip()
    arch = model[len("open_clip:"):].split(":")[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = open_clip.create_model(arch, pretrained=None, device="cpu")
    context = int(getattr(network, "context_length", 77) or 77)
    vocab = int(getattr(network, "vocab_size", 0) or 32000)

    def tokenizer(texts):
        """Characters as token ids: the real SigLIP tokenizers download, and ids do not change the
        cost; distinct texts still get distinct ids, so the text direction is not zero."""
        tokens = torch.zeros(len(texts), context, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [(ord(char) * 31 + i) % (vocab - 1) + 1 for i, char in enumerate(text[:context])]
            tokens[row, :len(ids)] = torch.tensor(ids)
        return tokens

    tokenizer.context_length = context
    siglip = "siglip" in arch.lower()
    size = network.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = (0.5,) * 3 if siglip else (0.48145466, 0.4578275, 0.40821073)
    std = (0.5,) * 3 if siglip else (0.26862954, 0.26130258, 0.27577711)
    return OpenClipEncoder(network, tokenizer, name=f"{model} (random)", image_size=size, mean=mean,
                           std=std).to(device)


def run_ours(device: torch.device, precision: str, steps: int, warmup: int, size: int, compile: bool,
             plain_malloc: bool = False, models: tuple[str, ...] = ("openai:ViT-B/32",), graph: bool = False) -> dict:
    if device.type == "cpu" and not plain_malloc:  # as Stylizer does
        reuse_freed_cpu_memory()
    config, content, vgg = setup(device, size)
    encoders = []
    for model in models:
        encoder = random_encoder(model, device)
        encoder.autocast_dtype = resolve_precision(precision, device)
        if compile:  # compiled during set-up and the warm-up steps, which are not timed
            encoder.compile_image_tower()
        encoders.append((encoder, 1.0 / len(models)))
    clip = encoders[0][0]
    objective = StyleObjective(encoders if len(encoders) > 1 else clip, vgg, config, content, PROMPT)
    generator = torch.Generator().manual_seed(0)
    unet = seeded_unet(16, 0).to(device)
    if graph:  # the whole step as one CUDA graph (captured during the first warm-up step; uncaptured on a CPU)
        optimizer = captured_optimizer(unet, config.lr, device)
    else:
        optimizer = torch.optim.Adam(unet.parameters(), lr=config.lr,
                                     **({"fused": True} if device.type == "cuda" else {}))
    captured = None
    step_times, breakdown, losses = [], [], []
    for step in range(warmup + steps):
        sections = Sections(device)
        sections._sync()
        started = time.perf_counter()
        params = sample_crop_params(config.n_crops, (size, size), config.crop_size, config.distortion, generator)
        if graph:
            if captured is None:
                captured = CapturedStep(unet, objective, content, optimizer, params, capture=device.type == "cuda")
            with sections("graph replay"):
                terms, _, _ = captured.step(params, config.lr)
        else:
            with sections("unet"):
                output = unet(content)
            optimizer.zero_grad(set_to_none=True)
            terms = objective.backward(output, params, clip_batch_for(config, device.type), section=sections)
            with sections("optimizer"):
                optimizer.step()
        sections._sync()
        if step >= warmup:
            step_times.append(time.perf_counter() - started)
            breakdown.append(dict(sections.seconds))
        losses.append(terms)
    path = "ours+compile" if compile else "ours+plain-malloc" if plain_malloc else "ours"
    if graph:
        path = "ours+cuda-graph" + ("+compile" if compile else "")
    if models != ("openai:ViT-B/32",):
        path = " + ".join(model.split(":", 1)[1] if model.startswith("open") else model for model in models)
    return {"path": path, "models": list(models), "precision": precision_name(clip.autocast_dtype),
            "step_times": step_times,
            "breakdown": {k: statistics.median(b[k] for b in breakdown) for k in breakdown[0]},
            "losses": losses}


# --- baseline: the reference implementation's structure ------------------------

def run_baseline(device: torch.device, steps: int, warmup: int, size: int) -> dict:
    """Per-crop torchvision augmentation in a Python loop, fp32, CLIP weights left trainable."""
    from torchvision import transforms

    config, content, vgg = setup(device, size)
    clip_model = random_vit_b32(device)  # requires_grad stays True, as in the reference
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)

    def clip_normalize(image):
        image = torch.nn.functional.interpolate(image, size=224, mode="bicubic")
        return (image - mean) / std

    def encode_text(text):
        from clipstyle_opt.encoders.clip import openai_clip
        from clipstyle_opt.encoders.templates import fill_templates

        tokens = openai_clip.tokenize(fill_templates(text)).to(device)
        with torch.no_grad():
            features = clip_model.encode_text(tokens).mean(0, keepdim=True)
        return features / features.norm(dim=-1, keepdim=True)

    text_direction = encode_text(PROMPT) - encode_text(config.source_text)
    text_direction = text_direction / text_direction.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        source = clip_model.encode_image(clip_normalize(content))
        source = source / source.norm(dim=-1, keepdim=True)
        content_features = vgg(content)
    cropper = transforms.RandomCrop(config.crop_size)
    augment = transforms.Compose([transforms.RandomPerspective(fill=0, p=1, distortion_scale=0.5),
                                  transforms.Resize(224)])
    torch.manual_seed(0)
    unet = seeded_unet(16, 0).to(device)
    optimizer = torch.optim.Adam(unet.parameters(), lr=config.lr)
    step_times = []
    for step in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        target = unet(content)
        target_features = vgg(target)
        content_loss = sum(torch.mean((target_features[k] - content_features[k]) ** 2) for k in config.content_layers)
        crops = [augment(cropper(target)) for _ in range(config.n_crops)]
        image_features = clip_model.encode_image(clip_normalize(torch.cat(crops, dim=0)))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        direction = image_features - source
        direction = direction / direction.norm(dim=-1, keepdim=True)
        patch = 1 - torch.cosine_similarity(direction, text_direction, dim=1)
        patch[patch < config.threshold] = 0
        glob = clip_model.encode_image(clip_normalize(target))
        glob = glob / glob.norm(dim=-1, keepdim=True)
        glob_direction = glob - source
        glob_direction = glob_direction / glob_direction.norm(dim=-1, keepdim=True)
        loss_glob = (1 - torch.cosine_similarity(glob_direction, text_direction, dim=1)).mean()
        d = [target[:, :, :, :-1] - target[:, :, :, 1:], target[:, :, :-1, :] - target[:, :, 1:, :],
             target[:, :, 1:, :-1] - target[:, :, :-1, 1:], target[:, :, :-1, :-1] - target[:, :, 1:, 1:]]
        tv = sum(torch.norm(x) for x in d)
        total = (config.lambda_patch * patch.mean() + config.lambda_c * content_loss
                 + config.lambda_tv * tv + config.lambda_dir * loss_glob)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            step_times.append(time.perf_counter() - started)
    return {"path": "baseline", "precision": "fp32", "step_times": step_times, "breakdown": {}, "losses": []}


def child(args) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = resolve_device(args.device)
    if args.mode == "baseline":
        result = run_baseline(device, args.steps, args.warmup, args.size)
    else:
        head, _, models = args.mode.partition("|")
        _, precision, *flags = head.split(":")
        result = run_ours(device, precision, args.steps, args.warmup, args.size, compile="compile" in flags,
                          plain_malloc="plain-malloc" in flags, graph="graph" in flags,
                          models=tuple(models.split("|")) if models else ("openai:ViT-B/32",))
    result["median_s"] = statistics.median(result["step_times"])
    result["peak_mb"] = peak_memory_mb(device)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--size", str(args.size), "--threads", str(args.threads)]
    if mode == "baseline":
        cmd[cmd.index("--steps") + 1] = str(args.baseline_steps)
    print(f"running {mode} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{mode} failed:\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
        return None
    return json.loads(line[len("RESULT "):])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of ours (after warm-up)")
    parser.add_argument("--baseline-steps", type=int, default=3, help="timed steps of the baseline")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precisions", default="auto,fp32", help="precisions of ours to time, comma-separated")
    parser.add_argument("--compile", action="store_true",
                        help="also time ours at auto precision with CLIP's image tower compiled (--compile)")
    parser.add_argument("--graph", action="store_true",
                        help="also time ours at auto precision as one captured CUDA graph per step "
                             "(with --compile: compiled too)")
    parser.add_argument("--plain-malloc", action="store_true",
                        help="also time ours at auto precision with glibc's default malloc settings (CPU)")
    parser.add_argument("--clip-model", action="append", default=[],
                        help="also time ours (auto precision) with this encoder, random weights (repeatable; "
                             "two or more: also their equal-weight ensemble)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "bench_step.json"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.mode = args.child
        return child(args)

    device = resolve_device(args.device)
    modes = [f"ours:{p}" for p in args.precisions.split(",")] + (["ours:auto:compile"] if args.compile else [])
    if args.graph:
        modes += ["ours:auto:graph"] + (["ours:auto:graph:compile"] if args.compile else [])
    if device.type == "cpu" and args.plain_malloc:
        modes.append("ours:auto:plain-malloc")
    modes += [f"ours:auto|{model}" for model in args.clip_model if model not in ("openai:ViT-B/32", "ViT-B/32")]
    if len(args.clip_model) > 1:
        modes.append("ours:auto|" + "|".join(args.clip_model))
    runs = [spawn("baseline", args)] + [spawn(mode, args) for mode in modes]
    if runs[0] is None:
        sys.exit("the baseline failed; no ratios to report")
    failed = [mode for mode, run in zip(modes, runs[1:]) if run is None]
    runs = [run for run in runs if run is not None]  # a failed path is reported above and left out
    baseline = runs[0]
    print(f"\n{device_name(device)} | torch {torch.__version__} | {args.size}x{args.size}, 64 crops of 128 px, "
          f"ViT-B/32 (random weights), VGG16 content loss\n")
    width = max(20, *(len(run["path"]) + 2 for run in runs))
    print(f"{'path':<{width}}{'precision':<10}{'median s/step':>14}{'peak MB':>10}{'vs baseline':>13}")
    for run in runs:
        ratio = baseline["median_s"] / run["median_s"]
        print(f"{run['path']:<{width}}{run['precision']:<10}{run['median_s']:>14.3f}{run['peak_mb']:>10.0f}"
              f"{ratio:>12.2f}x")
    for run in runs[1:]:
        parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(run["breakdown"].items(), key=lambda kv: -kv[1]))
        print(f"\nbreakdown of {run['path']} ({run['precision']}), median s: {parts}")
    by_precision = {run["precision"]: run for run in runs[1:] if run["path"] == "ours"}
    if "bf16" in by_precision and "fp32" in by_precision:
        print("\nloss terms on the same seed, bf16 vs fp32 (relative difference, first timed step):")
        a, b = by_precision["bf16"]["losses"][args.warmup], by_precision["fp32"]["losses"][args.warmup]
        for key in (*TERM_NAMES, "total"):  # every term of the table (style is 0 here: no style image)
            print(f"  {key:<8} bf16 {a[key]:.6g}  fp32 {b[key]:.6g}  rel diff {abs(a[key] - b[key]) / max(abs(b[key]), 1e-12):.2e}")
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": device_name(device),
              "torch": torch.__version__, "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "settings": {"size": args.size, "n_crops": 64, "crop_size": 128, "clip": "ViT-B/32 random",
                           "vgg": "vgg16"}, "runs": runs, "failed": failed}
    if failed:
        print(f"\nfailed (left out above): {', '.join(failed)}")
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
