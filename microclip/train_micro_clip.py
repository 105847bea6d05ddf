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
import contextlib
import importlib.metadata
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional

# Several processes may share the two cores; busy-waiting OpenMP threads then slow each
# other down many times over. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
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
from microclip.scoring import CLIP_MEAN, CLIP_STD, joint_accuracy, tokenize_trimmed, zero_shot_accuracy  # noqa: E402
from microclip.textures import COLOURS, PATTERNS  # noqa: E402

#: loss(image_features, text_features, positives) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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


def augment(images: torch.Tensor, out_size: int, min_crop: float, generator: torch.Generator) -> torch.Tensor:
    """Random resized crops (side min_crop..1 of the image), rotation +-15 deg, shear/aspect +-10 %,
    flips; one batched bicubic ``grid_sample`` to ``out_size`` px. (N, 3, H, W) -> (N, 3, out, out)."""
    n = images.shape[0]
    u = torch.rand(n, 7, generator=generator)
    side = min_crop + (1 - min_crop) * u[:, 0]
    angle = (u[:, 1] - 0.5) * (math.pi / 6)
    aspect = 1 + (u[:, 2] - 0.5) * 0.2
    shear = (u[:, 3] - 0.5) * 0.2
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    # Centre of the crop so that its (unrotated) square stays inside the image.
    cx = (u[:, 5] * 2 - 1) * (1 - side)
    cy = (u[:, 6] * 2 - 1) * (1 - side)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = side * aspect * flip, side / aspect
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin * sy + shear * sy
    theta[:, 1, 0] = sin * sx
    theta[:, 1, 1] = cos * sy
    theta[:, 0, 2] = cx
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="reflection", align_corners=False)


def clip_logits(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """(N images, M captions) scaled cosine similarities, as CLIP computes them."""
    return logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T


def _multi_positive_nll(logits: torch.Tensor, positives: torch.Tensor, dim: int) -> torch.Tensor:
    """Cross-entropy of the softmax over ``dim`` against a uniform target over the positives there."""
    target = positives.float()
    return -(target / target.sum(dim, keepdim=True) * logits.log_softmax(dim=dim)).sum(dim).mean()


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                     positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets (uniform over each row's/column's positives)."""
    logits = clip_logits(image_features, text_features, logit_scale)
    return (_multi_positive_nll(logits, positives, 1) + _multi_positive_nll(logits, positives, 0)) / 2


def image_to_text_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                       positives: torch.Tensor) -> torch.Tensor:
    """The image-to-text half of `contrastive_loss`; defined for any subset of the images, since
    each image's own caption is among its positives."""
    return _multi_positive_nll(clip_logits(image_features, text_features, logit_scale), positives, 1)


def encoder_precision(bf16: bool, device_type: str = "cpu") -> contextlib.ExitStack:
    """bf16 autocast (when asked) and the math attention kernel, for every encoder pass:
    the CPU flash-attention backward is slow in bf16."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16))
    stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def adversarial_images(model: torch.nn.Module, images: torch.Tensor, text_features: torch.Tensor,
                       positives: torch.Tensor, eps: float, std: torch.Tensor, generator: torch.Generator,
                       bf16: bool, loss_fn: Optional[LossFn] = None) -> torch.Tensor:
    """Normalized images pushed, within an L-infinity ball of ``eps`` pixel units, to raise the loss.

    Fast adversarial training (one signed-gradient step of 1.25 eps from a
    uniform random start, Wong et al. 2020), with the text side fixed. Why:
    a CLIP trained on clean images alone is steered by the stylization into
    faint streaks that score as "stripes" without looking like them; a model
    that small perturbations cannot move has input gradients that look like
    the concept, which is what the U-Net then draws.

    loss_fn(image_features, text_features, positives): the loss attacked;
    default `image_to_text_loss` with the model's logit scale (CLIP).
    """
    if loss_fn is None:
        def loss_fn(features: torch.Tensor, texts: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            return image_to_text_loss(features, texts, model.logit_scale.detach(), pos)
    scale = (eps / std).to(images.device).expand_as(images[:1])
    # drawn on the CPU from the trainer's generator whatever the device, so a seed gives the same noise
    noise = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images.device) * scale
    delta = noise.requires_grad_(True)
    with encoder_precision(bf16, images.device.type):
        features = model.encode_image(images + delta)
    loss = loss_fn(features.float(), text_features.detach(), positives)
    (grad,) = torch.autograd.grad(loss, delta)
    step = 1.25 * scale * grad.sign()
    delta = torch.maximum(torch.minimum(delta.detach() + step, scale), -scale)
    return images + delta


def carry_perturbed(images: torch.Tensor, grad: torch.Tensor, eps: float, std: torch.Tensor,
                    generator: torch.Generator) -> torch.Tensor:
    """Normalized ``images`` moved, within an L-infinity ball of ``eps`` pixel units, along the sign of
    ``grad`` (the loss's gradient at them, from the training step's own backward) from a uniform random
    start: --adversarial-mode free's perturbed part for the next step. The gradient is one step stale
    and taken at the clean image rather than at the random start, so the attack is weaker than
    `adversarial_images`, but it costs no extra forward and backward."""
    scale = (eps / std).to(images.device).expand_as(images[:1])
    start = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images.device) * scale
    delta = torch.maximum(torch.minimum(start + 1.25 * scale * grad.sign(), scale), -scale)
    return images + delta


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


def adversarial_radius(step: int, args: argparse.Namespace) -> float:
    """The L-infinity radius (pixel units, [0, 1]) of the adversarial part at ``step`` (0-based); 0: clean.

    Clean for the first --adversarial-start share of the steps, then ramped linearly from 0 to
    --adversarial-eps over --adversarial-warmup of all the steps."""
    adversarial_step = step - round(args.adversarial_start * args.steps)
    if adversarial_step < 0:
        return 0.0
    return args.adversarial_eps * min(1.0, (adversarial_step + 1) / max(1.0, args.adversarial_warmup * args.steps))


def softmax_step_count(args: argparse.Namespace) -> int:
    """How many of the first steps --softmax-first trains with CLIP's softmax loss."""
    return round(args.softmax_first * args.steps)


class SiglipFamily:
    """What the siglip family changes in the training loop (`microclip.micro_siglip` holds the parts)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from microclip import micro_siglip

        from clipstyle_opt.encoders.openclip import MICRO_TRUNKS

        self.parts = micro_siglip
        self.tokenizer = micro_siglip.train_tokenizer(args.vocab_size)
        longest = micro_siglip.longest_caption(self.tokenizer)
        if longest[0] > args.context_length:
            # Checked here, not after training: the final evaluation's templated captions would
            # otherwise fail to fit half an hour later (seen with sentencepiece 0.2.3, 140 pieces).
            raise SystemExit(
                f"error: the tokenizer splits {longest[1]!r} into {longest[0]} tokens, over --context-length "
                f"{args.context_length} (sentencepiece {importlib.metadata.version('sentencepiece')}, "
                f"{len(self.tokenizer)} pieces); raise --context-length, or install the pinned sentencepiece "
                f"(repository root): pip install -c constraints.txt -e '.[train]'")
        width = MICRO_TRUNKS[args.siglip_trunk]["embed_dim"]
        self.config = micro_siglip.model_config(
            trunk=args.siglip_trunk, image_size=args.image_resolution, embed_dim=width,
            context_length=args.context_length, vocab_size=len(self.tokenizer), text_width=args.text_width,
            text_heads=max(1, args.text_width // 64), text_layers=args.text_layers)
        self.context_length = args.context_length
        self.init = args.siglip_init
        self.loss_kind = args.siglip_loss
        self.softmax_steps = softmax_step_count(args)
        self.mean, self.std = micro_siglip.SIGLIP_MEAN, micro_siglip.SIGLIP_STD

    def build(self) -> torch.nn.Module:
        return self.parts.build_model(self.config, self.init)

    def tokens(self, captions: list[str]) -> torch.Tensor:
        return self.parts.tokenize(self.tokenizer, captions, self.context_length)

    def loss_fn(self, model: torch.nn.Module, detach: bool, step: int = 0) -> LossFn:
        """The loss at ``step`` (0-based): softmax during the first --softmax-first steps, then
        --siglip-loss; ``detach``: the adversary's version (image-to-text half, scale and bias fixed)."""
        kind = "softmax" if step < self.softmax_steps else self.loss_kind
        def loss(image_features: torch.Tensor, text_features: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
            scale, bias = model.logit_scale, model.logit_bias
            if detach:
                scale, bias = scale.detach(), bias.detach()
            if kind == "softmax":
                if detach:  # the adversary attacks the image-to-text half, as for the micro CLIP
                    return image_to_text_loss(image_features, text_features, scale, positives)
                return contrastive_loss(image_features, text_features, scale, positives)
            return self.parts.sigmoid_loss(image_features, text_features, scale, bias, positives)
        return loss

    def prepare(self, model: torch.nn.Module, device: torch.device) -> None:
        """On the CPU, timm's explicit attention instead of torch's math kernel, as the project's
        encoder does (`clipstyle_opt.encoders.openclip.timm_attention_layers`): measured on the
        2-core Intel Xeon (AMX), bf16 autocast, the image tower's forward + backward for 128
        textures took 0.30 s against 0.36 s. A kernel choice, not saved with the model."""
        from clipstyle_opt.encoders.openclip import timm_attention_layers

        if device.type == "cpu":
            for layer in timm_attention_layers(model):
                layer.fused_attn = False

    def save(self, model: torch.nn.Module, out: Path) -> int:
        return self.parts.save_folder(model, self.tokenizer, self.config, out)

    def reload(self, out: Path) -> torch.nn.Module:
        from clipstyle_opt.encoders.openclip import load_open_clip
        return load_open_clip(f"local-dir:{out}")


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


class TrainingBatches(torch.utils.data.IterableDataset):
    """The trainer's stream of texture batches: ``steps`` of them, drawn from one generator seeded with ``seed``.

    Iterating yields a `TrainingBatch` per step. It holds all of the stream's randomness (the
    per-batch colour subset and the batch itself), so rendering it in a DataLoader worker gives
    the same batches, in the same order, as rendering it in the training process.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args

    def __iter__(self):  # type: ignore[no-untyped-def]
        args = self.args
        rng = np.random.default_rng(args.seed)
        for carried in carried_counts(args):
            colours = None
            if args.colours_per_batch:
                colours = list(rng.choice(list(COLOURS), size=args.colours_per_batch, replace=False))
            yield make_training_batch(args.batch_size - carried, args.render_size, rng,
                                      templated_fraction=args.templated_fraction,
                                      blend_fraction=args.blend_fraction, photo_fraction=args.photo_fraction,
                                      partial_fraction=args.partial_fraction, colours=colours)


def carried_counts(args: argparse.Namespace) -> list[int]:
    """How many of each step's ``batch_size`` images are carried over from the step before
    (--adversarial-mode free: last step's fresh images, perturbed); the stream renders only the rest.
    0 at every step in fgsm mode and in the clean steps."""
    counts, carried = [], 0
    perturbed = round(args.adversarial_fraction * args.batch_size)
    for step in range(args.steps):
        counts.append(carried)
        free = args.adversarial_mode == "free" and adversarial_radius(step, args) > 0
        carried = min(perturbed, args.batch_size - carried) if free else 0
    return counts


def training_batches(args: argparse.Namespace) -> Iterator[TrainingBatch]:
    """`TrainingBatches`, rendered in this process (--data-workers 0) or one step ahead in a worker
    process (--data-workers 1). Why a worker: rendering is single-threaded numpy, about 0.14 s a
    batch on the 2-core Intel Xeon, a fifth of a micro SigLIP step; in a worker it
    overlaps with the model's step instead of adding to it."""
    stream = TrainingBatches(args)
    if args.data_workers == 0:
        return iter(stream)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.data_workers,
                                         prefetch_factor=2)
    return iter(loader)


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
