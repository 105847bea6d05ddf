#!/usr/bin/env python
"""Train a *micro CLIP* on procedural texture-caption pairs, on CPU, in a few minutes.

The model is OpenAI's own ``clip.model.CLIP`` class (a small ViT image tower
and a small causal text transformer), so the saved fp16 state dict loads with
``clip.load(path, jit=False)`` and ``clip.model.build_model`` like an OpenAI
checkpoint. It learns what colour words ("red", ...) and pattern words
("stripes", ...) look like from images made by
`microclip.textures` (captions: `microclip.captions`), freshly generated at every step, and what
"a photo" looks like (photo-like clutter), also through the 79 ImageNet
prompt templates the stylization uses.

Loss: symmetric InfoNCE with a learnable logit scale, with multi-positive
targets: a batch repeats (colour, pattern) classes and some captions name
only the colour or only the pattern, so every caption that truly describes
an image counts as a positive for it (uniform target over the positives)
instead of being pushed away as a false negative.

Images: rendered at ``--render-size`` px, randomly cropped (resized crops,
mild rotation/shear, flips) to the model's input resolution with bicubic
sampling, then normalized with OpenAI CLIP's mean/std, exactly as the project
feeds CLIP.

Adversarial training (``--adversarial-eps``): part of each batch is replaced
by images perturbed to raise the loss. A model trained on clean images alone
can be steered by the stylization into faint streaks that it scores as
"stripes"; a model that small perturbations cannot move has gradients that
look like the pattern, so the stylization draws it (microclip/README gives
the figures). ``--adversarial-start`` trains clean before that part begins:
faster to learn the patterns, but the adversarial part then costs accuracy.
``--adversarial-mode free`` makes the perturbed part without an extra pass: it
is the step before's fresh images, moved along the input gradient that step's
own backward gave, so an adversarial step costs what a clean one does.

``--family siglip`` trains a micro SigLIP instead (`microclip.micro_siglip`):
open_clip's ``CustomTextCLIP`` in SigLIP's layout, its own unigram tokenizer,
and SigLIP's pairwise sigmoid loss with a learned scale and bias, saved as a
``local-dir:`` folder. Same data and augmentation; the bundled one's schedule and adversarial
part differ (the command below; microclip/README says why).

Where the parts are: `microclip.training_data` (the batch stream and augmentation),
`microclip.contrastive` (the losses and the adversarial perturbations),
`microclip.micro_siglip` (the siglip family); this module holds the options, the
loop and the saving.

Examples (the commands that made the bundled models; from the repository root, and
``python microclip/train_micro_clip.py`` works as well)::

    python -m microclip.train_micro_clip --out tests/data/micro_clip.pt --seed 0 --steps 1200 \
        --adversarial-eps 0.0314 --adversarial-fraction 0.5 --adversarial-warmup 0.3
    python -m microclip.train_micro_clip --family siglip --context-length 16 --siglip-init clip \
        --seed 0 --steps 1900 --schedule wsd --decay-fraction 0.3 --adversarial-mode free \
        --adversarial-start 0.5 --adversarial-warmup 0.1 --adversarial-fraction 0.375 \
        --data-workers 1 --eval-every 250 --out tests/data/micro_siglip
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

# Several processes may share the two cores; busy-waiting OpenMP threads then slow each
# other down many times over. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

# Run as a file (python microclip/train_micro_clip.py), the repository root is not on the path.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

with warnings.catch_warnings():  # clip-anytorch imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP

from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES  # noqa: E402
from microclip.batches import TrainingBatch, make_batch, make_training_batch  # noqa: E402
from microclip.contrastive import (  # noqa: E402
    adversarial_images, adversarial_radius, carry_perturbed, contrastive_loss, encoder_precision,
)
from microclip.micro_siglip import SiglipFamily  # noqa: E402
from microclip.scoring import CLIP_MEAN, CLIP_STD, joint_accuracy, tokenize_trimmed, zero_shot_accuracy  # noqa: E402
from microclip.textures import COLOURS, PATTERNS  # noqa: E402
from microclip.training_data import augment, training_batches  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--family", choices=("clip", "siglip"), default="clip",
                   help="clip: OpenAI's CLIP class, softmax contrastive loss, saved as an fp16 state dict; "
                        "siglip: open_clip's CustomTextCLIP in SigLIP's layout (timm trunk with attention "
                        "pool, non-causal text tower, unigram tokenizer), pairwise sigmoid loss with a learned "
                        "scale and bias, saved as a local-dir folder (microclip/micro_siglip.py)")
    p.add_argument("--out", default=None,
                   help="output: a checkpoint file (clip) or a folder (siglip); default "
                        "tests/data/micro_clip.pt or tests/data/micro_siglip")
    p.add_argument("--seed", type=int, default=0, help="seed of torch and of the data generator")
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=128, help="image-caption pairs per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay on matrices")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps before the decay")
    p.add_argument("--schedule", choices=("cosine", "wsd"), default="cosine",
                   help="after the warm-up: cosine: decay to 0 over the remaining steps; wsd (warmup-stable-"
                        "decay): hold the peak rate, then decay linearly to 0 over the last --decay-fraction")
    p.add_argument("--decay-fraction", type=float, default=0.2,
                   help="with --schedule wsd: the share of all steps spent decaying")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient's global norm to this; 0: off")
    p.add_argument("--beta2", type=float, default=0.98, help="AdamW's beta2 (SigLIP used 0.95)")
    p.add_argument("--calibration-lr-scale", type=float, default=1.0,
                   help="the logit scale's (and SigLIP's logit bias's) learning rate, as a multiple of --lr")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--data-workers", type=int, choices=(0, 1), default=0,
                   help="1: render the next batches in a worker process while the model trains (the same "
                        "batches in the same order as 0, which renders them between steps)")
    p.add_argument("--device", default="cpu",
                   help="where the model trains (cpu, cuda, cuda:1, ...); the data is always made on the CPU. "
                        "The bundled models were trained on the CPU; a GPU is for trying recipes quickly")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="bf16: autocast matmuls to bfloat16 (fp32 master weights; fast on CPUs with "
                        "AVX512-BF16/AMX); auto: bf16 where the CPU supports it, else fp32")
    p.add_argument("--render-size", type=int, default=88, help="side in px of the rendered images before cropping")
    p.add_argument("--min-crop", type=float, default=0.5, help="smallest crop side, as a fraction of the render")
    p.add_argument("--templated-fraction", type=float, default=0.4,
                   help="share of captions wrapped in an ImageNet prompt template")
    p.add_argument("--blend-fraction", type=float, default=0.3,
                   help="share of textures blended over photo-like clutter")
    p.add_argument("--photo-fraction", type=float, default=0.06,
                   help="share of pure clutter images captioned 'a photo'")
    p.add_argument("--partial-fraction", type=float, default=0.2,
                   help="share of captions naming only the colour or only the pattern")
    p.add_argument("--colours-per-batch", type=int, default=0,
                   help="draw each batch's textures from this many random colours (0: all 8), so that more "
                        "of its negative pairs share the colour and differ in the pattern")
    p.add_argument("--adversarial-eps", type=float, default=0.0314,
                   help="L-infinity radius in [0, 1] pixel units (0.0314 is about 8/255) of the fast "
                        "adversarial training (FGSM from a random start); 0 trains on clean images only")
    p.add_argument("--adversarial-fraction", type=float, default=0.5,
                   help="share of each batch that is perturbed (the rest stays clean)")
    p.add_argument("--adversarial-warmup", type=float, default=0.3,
                   help="share of the steps over which the radius ramps up linearly from 0")
    p.add_argument("--adversarial-start", type=float, default=0.0,
                   help="share of the steps trained on clean images only before the adversarial part (and "
                        "its ramp) begins; 0: from the first step")
    p.add_argument("--adversarial-mode", choices=("fgsm", "free"), default="fgsm",
                   help="fgsm: the perturbed part is made from this step's images with an extra forward and "
                        "backward (Wong et al. 2020); free: it is last step's fresh images, pushed along the "
                        "input gradient that step's own backward already gave (no extra pass; one step stale, "
                        "in the spirit of Shafahi et al. 2019), so each rendered image is seen clean and then "
                        "perturbed")
    g = p.add_argument_group("model (clip.model.CLIP arguments; for siglip: embed dim = the trunk's width, "
                             "the image tower is --siglip-trunk)")
    g.add_argument("--embed-dim", type=int, default=128)
    g.add_argument("--image-resolution", type=int, default=64)
    g.add_argument("--vision-layers", type=int, default=4)
    g.add_argument("--vision-width", type=int, default=192)
    g.add_argument("--vision-patch-size", type=int, default=8)
    g.add_argument("--text-width", type=int, default=128, help="text heads are width // 64, as build_model infers")
    g.add_argument("--text-layers", type=int, default=3)
    g.add_argument("--context-length", type=int, default=None, help="default 77 (clip), 32 (siglip)")
    g.add_argument("--vocab-size", type=int, default=None,
                   help="default 49408 (clip: OpenAI's BPE); siglip: the unigram tokenizer's size, default 256")
    g.add_argument("--siglip-bias-init", type=float, default=None,
                   help="initial logit bias of the sigmoid loss; default: the log-odds of a positive pair in "
                        "a training batch (SigLIP's rationale for its -10, at this batch's positive rate)")
    g.add_argument("--siglip-scale-init", type=float, default=10.0,
                   help="initial logit scale t of the sigmoid loss (SigLIP: 10); learned from there")
    g.add_argument("--siglip-init", choices=("timm", "clip"), default="timm",
                   help="initialization of the siglip image trunk: timm's or OpenAI CLIP's (the bundled model; "
                        "microclip.micro_siglip.clip_initialization: learns patterns faster when trained on them)")
    g.add_argument("--siglip-trunk", default="clipstyle_vit_micro64",
                   help="timm trunk of the siglip image tower (clipstyle_opt.encoders.openclip.MICRO_TRUNKS)")
    g.add_argument("--siglip-loss", choices=("sigmoid", "softmax"), default="sigmoid",
                   help="softmax: train the SigLIP-layout model with CLIP's loss instead (a diagnostic that "
                        "separates the layout from the loss; not SigLIP's recipe)")
    g.add_argument("--softmax-first", type=float, default=0.0, metavar="FRACTION",
                   help="train the first FRACTION (0-1) of the steps with CLIP's softmax loss, then switch to "
                        "--siglip-loss; a warm start that deviates from SigLIP's recipe (microclip/README)")
    p.add_argument("--eval-images", type=int, default=512, help="held-out images for the zero-shot check")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=0,
                   help="every this many steps, print the held-out joint pattern accuracy on 256 textures "
                        "(plain captions, the model in memory); 0: only at the end")
    args = p.parse_args(argv)
    siglip = args.family == "siglip"
    if args.out is None:
        args.out = "tests/data/micro_siglip" if siglip else "tests/data/micro_clip.pt"
    if args.context_length is None:
        args.context_length = 32 if siglip else 77
    if args.vocab_size is None:
        args.vocab_size = 256 if siglip else 49408
    if not (0 <= args.adversarial_eps <= 1 and 0 <= args.adversarial_fraction <= 1
            and 0 <= args.adversarial_warmup <= 1 and 0 <= args.adversarial_start <= 1):
        p.error("--adversarial-eps, --adversarial-fraction, --adversarial-warmup and --adversarial-start "
                "must be in [0, 1]")
    if not 0 <= args.softmax_first <= 1:
        p.error("--softmax-first must be in [0, 1]")
    if args.softmax_first and not siglip:
        p.error("--softmax-first applies to --family siglip only")
    return args


def build(args: argparse.Namespace) -> CLIP:
    heads = args.text_width // 64
    if heads < 1:
        raise SystemExit("--text-width must be >= 64 (clip's build_model infers text heads = width // 64)")
    return CLIP(args.embed_dim, args.image_resolution, args.vision_layers, args.vision_width,
                args.vision_patch_size, args.context_length, args.vocab_size, args.text_width, heads,
                args.text_layers)


def fp16_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    """The state dict with every float tensor in fp16 (OpenAI ships fp16 weights); `build_model`
    casts each tensor to its parameter's dtype on loading, so the file loads unchanged."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}


def held_out_accuracy(model: torch.nn.Module, family: Optional[SiglipFamily], images: torch.Tensor,
                      labels: list[tuple[str, str]], mean: torch.Tensor, std: torch.Tensor,
                      resolution: int, context_length: int) -> dict[str, float]:
    """Joint colour and pattern accuracy (fractions) of the model in memory, plain captions: a quick
    look during training (`zero_shot_accuracy` on the saved model gives the figures that count).

    images: (N, 3, S, S) in [0, 1] on the CPU; resized (bicubic) and normalized here, as the
    encoders do. Probabilities as `zero_shot_accuracy`: sigmoid with a logit bias, else softmax.
    """
    device = next(model.parameters()).device
    texts = [f"{c} {p}" for c in COLOURS for p in PATTERNS]
    tokens = family.tokens(texts) if family else tokenize_trimmed(texts, context_length)
    x = F.interpolate(images, size=(resolution, resolution), mode="bicubic", align_corners=False)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(((x - mean) / std).to(device)).float(), dim=-1)
        text_features = F.normalize(model.encode_text(tokens.to(device)).float(), dim=-1)
    model.train(was_training)
    return joint_accuracy(model, image_features.cpu(), text_features.cpu(), labels)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """The peak rate ``args.lr`` times the schedule at ``step`` (0-based): a linear warm-up over
    ``args.warmup`` steps, then ``args.schedule`` (see --schedule)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "wsd":
        decay_start = round(args.steps * (1 - args.decay_fraction))
        if step < decay_start:
            return args.lr
        return args.lr * (args.steps - step) / max(1, args.steps - decay_start)
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    device = torch.device(args.device)
    family = SiglipFamily(args) if args.family == "siglip" else None
    model = family.build() if family else build(args)
    if family:
        bias = args.siglip_bias_init
        if bias is None:
            # SigLIP initializes b = -10 so that training starts at the prior of its 32k-pair batches,
            # about one positive per row. Here a row has several positives (classes repeat, partial
            # captions), so the same rationale gives a far higher bias; at -10 the loss of the
            # positives swamped everything and no pattern was learned (microclip/README).
            sample = make_training_batch(args.batch_size, 16, np.random.default_rng([args.seed, 1]),
                                         templated_fraction=args.templated_fraction,
                                         blend_fraction=args.blend_fraction, photo_fraction=args.photo_fraction,
                                         partial_fraction=args.partial_fraction)
            rate = float(sample.positives().float().mean())
            bias = math.log(rate / (1 - rate))
        with torch.no_grad():
            model.logit_bias.fill_(bias)
            model.logit_scale.fill_(math.log(args.siglip_scale_init))
    model.to(device)
    if family:
        family.prepare(model, device)
    bf16 = args.precision == "bf16" or (args.precision == "auto" and (
        device.type == "cuda" or (torch.backends.mkldnn.is_available()
                                  and torch.ops.mkldnn._is_mkldnn_bf16_supported())))
    mean = torch.tensor(family.mean if family else CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(family.std if family else CLIP_STD).view(1, 3, 1, 1)
    decay, no_decay, calibration = [], [], []
    for name, param in model.named_parameters():
        embedding = "embedding" in name or "pos_embed" in name
        if name in ("logit_scale", "logit_bias") and args.calibration_lr_scale != 1:
            calibration.append(param)
        else:
            (decay if param.ndim >= 2 and not embedding else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if calibration:
        groups.append({"params": calibration, "weight_decay": 0.0, "lr_scale": args.calibration_lr_scale})
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, args.beta2), eps=1e-6, fused=True)
    peeks: dict[int, dict[str, float]] = {}  # step -> held_out_accuracy, with --eval-every
    if args.eval_every:
        peek_images, _, peek_labels = make_batch(256, args.render_size, np.random.default_rng([args.seed, 104729]))

    def lr_at(step: int) -> float:
        return learning_rate(step, args)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"micro {args.family}: {n_params / 1e6:.2f} M parameters, {args.steps} steps x {args.batch_size} pairs, "
          f"{torch.get_num_threads()} threads, {'bf16 autocast' if bf16 else 'fp32'} on {device}", flush=True)
    start = time.perf_counter()
    data_time = 0.0
    running = None
    model.train()
    batches = training_batches(args)
    carried: Optional[TrainingBatch] = None  # --adversarial-mode free: last step's images, perturbed
    for step in range(args.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        captions, image_labels, caption_labels = batch.captions, batch.image_labels, batch.caption_labels
        n_fresh = len(captions)
        n_carried = 0 if carried is None else carried.images.shape[0]
        assert n_carried + n_fresh == args.batch_size, "carried_counts() disagrees with the loop"
        images = augment(batch.images, args.image_resolution, args.min_crop, generator)
        images = ((images - mean) / std).to(device)
        if carried is not None:
            images = torch.cat([carried.images, images])
            captions = carried.captions + captions
            image_labels = carried.image_labels + image_labels
            caption_labels = carried.caption_labels + caption_labels
        unique = sorted(set(captions))
        index = torch.tensor([unique.index(c) for c in captions], device=device)
        tokens = (family.tokens(unique) if family else tokenize_trimmed(unique, args.context_length)).to(device)
        positives = TrainingBatch(images, captions, image_labels, caption_labels).positives().to(device)
        data_time += time.perf_counter() - t0

        for group in optimizer.param_groups:
            group["lr"] = lr_at(step) * group.get("lr_scale", 1.0)
        with encoder_precision(bf16, device.type):
            text_features = model.encode_text(tokens)[index]
        k = round(args.adversarial_fraction * images.shape[0])
        eps = adversarial_radius(step, args)
        free = args.adversarial_mode == "free" and eps > 0
        if eps > 0 and not free:
            perturbed = adversarial_images(model, images[:k], text_features.float(), positives[:k], eps,
                                           std, generator, bf16,
                                           loss_fn=family.loss_fn(model, detach=True, step=step) if family else None)
            images = torch.cat([perturbed, images[k:]])
        if free:
            images.requires_grad_(True)
        with encoder_precision(bf16, device.type):
            image_features = model.encode_image(images)
        if family:
            loss_fn = family.loss_fn(model, detach=False, step=step)
            loss = loss_fn(image_features.float(), text_features.float(), positives)
        else:
            loss = contrastive_loss(image_features.float(), text_features.float(), model.logit_scale, positives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        carried = None
        if free:
            fresh = slice(n_carried, n_carried + min(k, n_fresh))
            carried = TrainingBatch(
                carry_perturbed(images.detach()[fresh], images.grad[fresh], eps, std, generator),
                captions[fresh], image_labels[fresh], caption_labels[fresh])
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        value = loss.item()
        running = value if running is None else 0.95 * running + 0.05 * value
        if (step + 1) % args.log_every == 0 or step == 0:
            elapsed = time.perf_counter() - start
            bias = f"  bias {model.logit_bias.item():.2f}" if family else ""
            print(f"step {step + 1:5d}/{args.steps}  loss {running:.3f}  scale {model.logit_scale.exp():.1f}{bias}  "
                  f"lr {lr_at(step):.2e}  {elapsed:.0f} s (data {data_time:.0f} s)", flush=True)
        if args.eval_every and (step + 1) % args.eval_every == 0:
            peek = peeks[step + 1] = held_out_accuracy(model, family, peek_images, peek_labels, mean, std, args.image_resolution,
                                     args.context_length)
            print(f"step {step + 1:5d}  held-out joint colour {peek['joint_colour']:.1%}  "
                  f"pattern {peek['joint_pattern']:.1%}", flush=True)
    train_time = time.perf_counter() - start
    print(f"training time: {train_time:.1f} s ({data_time:.1f} s making data)", flush=True)

    model.cpu()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if family:
        size = family.save(model, out)
        reloaded = family.reload(out)  # the project's OpenClipEncoder: resizes and normalizes itself
    else:
        torch.save(fp16_state_dict(model), out)
        size = out.stat().st_size
        # Held-out check on the saved (fp16) weights, reloaded the way the project loads them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reloaded, _ = clip.load(str(out), device="cpu", jit=False)
    reloaded.eval()
    eval_rng = np.random.default_rng([args.seed, 7919])  # a stream training never draws from
    images, _, labels = make_batch(args.eval_images, args.render_size, eval_rng)
    blended, _, blended_labels = make_batch(args.eval_images // 2, args.render_size, eval_rng, blend_fraction=1.0)
    plain = zero_shot_accuracy(reloaded, images, labels)
    templated = zero_shot_accuracy(reloaded, images, labels, IMAGENET_TEMPLATES)
    over_clutter = zero_shot_accuracy(reloaded, blended, blended_labels)
    report = {
        "command": "python -m microclip.train_micro_clip " + " ".join(argv if argv is not None else sys.argv[1:]),
        "family": args.family, "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
        "train_time_s": round(train_time, 1), "data_time_s": round(data_time, 1),
        "size_bytes": size, "parameters": n_params, "threads": args.threads, "device": str(device),
        "precision": "bf16" if bf16 else "fp32",
        "eval_images": args.eval_images,
        "zero_shot_plain": plain, "zero_shot_templated": templated, "zero_shot_blended_plain": over_clutter,
        "logit_scale": float(model.logit_scale.detach().exp()),
    }
    if peeks:
        report["held_out_during_training"] = peeks
    if family:
        report["logit_bias"] = float(model.logit_bias.detach())
        report["tokenizer_vocab"] = len(family.tokenizer)
    report_path = out.parent / (out.name + ".json") if family else out.with_suffix(".json")
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=2)
    print(f"saved {out} ({size / 2**20:.2f} MiB)")
    for name, acc in (("plain captions", plain), ("templated prompts", templated),
                      ("blended over clutter", over_clutter)):
        print(f"held-out zero-shot, {name}: " + ", ".join(f"{k} {v:.1%}" for k, v in acc.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
