"""CLIP through clip-anytorch: load by name or local file, encode texts through
the prompt templates, encode images at the model's own input size and
normalization."""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import ModelUnavailableError, first_line
from .prompts import check_fits, max_prompt_tokens
from .base import WeightsCastOnce, resize_and_normalize
from .openai_tokens import count_tokens
from .templates import IMAGENET_TEMPLATES, fill_templates
from .weights import cache_dir, download

with warnings.catch_warnings():  # clip-anytorch imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import clip as openai_clip
    from clip.model import CLIP, QuickGELU

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _local_file_hint() -> str:
    return "Pass a local checkpoint with --clip-model /path/to/ViT-B-32.pt (or clip_model=... in Python)."


def resolve_clip_checkpoint(name_or_path: str) -> Path:
    """Local path of a CLIP checkpoint: the file itself, or the cached/downloaded named model."""
    if os.path.isfile(name_or_path):
        return Path(name_or_path)
    urls = getattr(openai_clip.clip, "_MODELS", {})
    if name_or_path not in urls:
        raise ModelUnavailableError(
            f"CLIP model {name_or_path!r} is neither an existing checkpoint file nor a known name "
            f"({', '.join(urls)})")
    url = urls[name_or_path]
    target = cache_dir("clip") / Path(url).name
    return download(url, target, what=f"CLIP model {name_or_path}", hint=_local_file_hint(),
                    sha256_prefix=url.split("/")[-2])


class ClipEncoder(WeightsCastOnce):
    """A frozen CLIP model with the encoding steps the losses and metrics need.

    Images: NCHW RGB float in [0, 1], any size; they are resized (bicubic) to
    the model's input resolution and normalized with CLIP's mean and std.
    All returned embeddings are float32 and L2-normalized.

    The encoder takes over ``model``: it is frozen and put in fp32, and two of
    its modules are swapped for faster equivalents (`PatchEmbedding`,
    `QuickGELUViaSiLU`); the state dict keeps its keys and values.
    """

    family = "openai"

    def __init__(self, model: CLIP, name: str = "", mean: Sequence[float] = OPENAI_MEAN,
                 std: Sequence[float] = OPENAI_STD) -> None:
        super().__init__()
        self.model = model.float().eval().requires_grad_(False)
        _patch_embedding_as_matmul(self.model)
        _quick_gelu_as_silu(self.model)
        self.name = name
        self.input_resolution = int(model.visual.input_resolution)
        self.context_length = int(model.context_length)
        self._limits: dict[tuple[str, ...], int] = {}  # templates -> max_prompt_tokens
        self.embedding_width = int(model.text_projection.shape[1])
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def _cast_weights(self, dtype: torch.dtype) -> None:
        # The way OpenAI's CLIP runs in fp16 on GPUs: matmuls and convs in the low
        # precision, LayerNorms in fp32 (clip's LayerNorm computes in fp32).
        _cast_matmul_weights(self.model, dtype)

    def compile_image_tower(self) -> None:
        """Replace the image tower by its torch.compile'd version (compiled on first use, per input shape)."""
        if not isinstance(self.model.visual, torch._dynamo.eval_frame.OptimizedModule):
            self.model.visual = torch.compile(self.model.visual)

    @property
    def device(self) -> torch.device:
        """The device the encoder's weights are on."""
        return self.mean.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to the input resolution (bicubic, as the reference) and normalize."""
        return resize_and_normalize(images, self.input_resolution, self.mean, self.std)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D) unit vectors. Differentiable w.r.t. ``images``."""
        with _attention_kernels(self.device):
            features = self.model.encode_image(self.preprocess(images))
        return F.normalize(features.float(), dim=-1)

    def check_prompt(self, text: str, what: str = "the prompt",
                     templates: Sequence[str] = IMAGENET_TEMPLATES) -> str:
        """``text`` if it fits this model's context through every template, else one-line `ConfigError`
        (`clipstyle_opt.encoders.prompts.check_fits`; every OpenAI CLIP is named "CLIP": they share one
        tokenizer and context)."""
        templates = tuple(templates)
        limit = self._limits.get(templates)
        if limit is None:
            limit = self._limits[templates] = max_prompt_tokens(self.context_length, templates, count_tokens)
        return check_fits(text, what, label="CLIP", count=count_tokens, context_length=self.context_length,
                          templates=templates, limit=limit)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (N, D) unit vectors (no templates). A text longer than the context raises `ConfigError`."""
        for text in texts:
            self.check_prompt(text, "a text", templates=())
        tokens = openai_clip.tokenize(list(texts), context_length=self.context_length)
        features = self.model.encode_text(tokens.to(self.device))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_prompt(self, text: str, templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
        """One text through every template: mean of the raw template embeddings, then normalized -> (D,).

        Averaging before normalizing follows the reference code. A text that does not fit the
        context in every template raises `ConfigError` (`clipstyle_opt.encoders.prompts`): never truncated.
        """
        self.check_prompt(text, "the text", templates=templates)
        tokens = openai_clip.tokenize(fill_templates(text, tuple(templates)), context_length=self.context_length)
        features = self.model.encode_text(tokens.to(self.device))
        return F.normalize(features.float().mean(dim=0), dim=-1)


def _attention_kernels(device: torch.device):
    """On the CPU, plain matmul attention: for ViT's ~50-token sequences its backward is
    faster than the CPU flash kernel's (measured: ~12 % of a step). Elsewhere: torch's choice."""
    if device.type == "cpu":
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


class PatchEmbedding(nn.Module):
    """ViT's patch embedding (a conv whose stride equals its kernel) computed as one matmul.

    Same weight tensor, same output (N, width, grid, grid) as the conv it
    replaces, up to float summation order. Why not keep the conv: oneDNN's
    input gradient for a 32x32-stride-32 conv is slow; measured on a 2-core
    CPU for 13 crops at 224 px, forward+backward took 70 ms as a conv and 5 ms
    as this matmul (of a 3.9 s step, five such chunks: ~0.3 s).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight  # (width, 3, patch, patch); shared, so state dicts stay the same
        self.patch = conv.kernel_size[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens of ``images`` (N, 3, H, W), H and W multiples of the patch size: (N, width, H/p, W/p)."""
        n, channels, height, width = images.shape
        p = self.patch
        rows, cols = height // p, width // p
        patches = (images[:, :, :rows * p, :cols * p]
                   .reshape(n, channels, rows, p, cols, p)
                   .permute(0, 2, 4, 1, 3, 5)
                   .reshape(n * rows * cols, channels * p * p))
        embedded = patches @ self.weight.reshape(self.weight.shape[0], -1).t()
        return embedded.reshape(n, rows, cols, -1).permute(0, 3, 1, 2)


def _patch_embedding_as_matmul(model: CLIP) -> None:
    """Swap a ViT image tower's patch-embedding conv for `PatchEmbedding` (ResNet towers untouched)."""
    conv = getattr(model.visual, "conv1", None)
    if (isinstance(conv, nn.Conv2d) and conv.bias is None and conv.kernel_size == conv.stride
            and conv.kernel_size[0] == conv.kernel_size[1] and conv.padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1):
        model.visual.conv1 = PatchEmbedding(conv)


class QuickGELUViaSiLU(nn.Module):
    """CLIP's QuickGELU, x * sigmoid(1.702 x), written as silu(1.702 x) / 1.702.

    The same function up to float rounding, but SiLU has fused forward and
    backward kernels where QuickGELU's sigmoid-and-multiply takes five
    elementwise passes over the MLP's widest activations. Measured on a 2-core
    CPU at the reference settings: about 0.12 s of a 3.1 s step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """QuickGELU of ``x``, any shape, elementwise (equal to x * sigmoid(1.702 x) up to float rounding)."""
        return F.silu(x * 1.702) * (1 / 1.702)


def _quick_gelu_as_silu(model: nn.Module) -> None:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, QuickGELU):
                setattr(module, name, QuickGELUViaSiLU())


def _cast_matmul_weights(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast conv, linear and attention weights (and the output projections) to ``dtype``; LayerNorms untouched.

    clip.model.convert_weights does this for fp16 only; this takes any dtype.
    """
    attention_tensors = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
                         "in_proj_bias", "bias_k", "bias_v")
    for module in model.modules():
        tensors = []
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, PatchEmbedding)):
            tensors = [module.weight, getattr(module, "bias", None)]
        elif isinstance(module, nn.MultiheadAttention):
            tensors = [getattr(module, name) for name in attention_tensors]
        tensors += [getattr(module, name, None) for name in ("text_projection", "proj")]
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.to(dtype)


_OPENAI_TO_OPEN_CLIP = {"ViT-L/14@336px": "ViT-L-14-336"}
"""OpenAI names whose open_clip architecture is not the name with "/" as "-"."""


def known_openai_models() -> list[dict[str, Any]]:
    """`clipstyle models` rows for every OpenAI CLIP name clip-anytorch knows; input px and width
    from open_clip's configs when open_clip is installed, else blank."""
    from .openclip import optional_open_clip, size_and_width

    open_clip = optional_open_clip()
    rows = []
    clip_cache = cache_dir("clip")
    for name, url in getattr(openai_clip.clip, "_MODELS", {}).items():
        arch = _OPENAI_TO_OPEN_CLIP.get(name, name.replace("/", "-"))
        size, width = size_and_width(open_clip, arch) if open_clip else (None, None)
        rows.append({"model": f"openai:{name}", "family": "openai", "input_px": size, "width": width,
                     "cached": (clip_cache / os.path.basename(url)).is_file()})
    return rows


def load_clip(name_or_path: str, device: torch.device | str = "cpu") -> ClipEncoder:
    """Load a frozen `ClipEncoder` from a model name (downloaded and cached) or a local file.

    Raises `ModelUnavailableError` with one clear line when the weights cannot be had.
    """
    path = resolve_clip_checkpoint(name_or_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, _ = openai_clip.load(str(path), device="cpu", jit=False)
    except Exception as exc:  # clip raises many kinds of errors for a bad file
        raise ModelUnavailableError(f"cannot load CLIP checkpoint {path}: {first_line(exc)}") from None
    return ClipEncoder(model, name=name_or_path).to(device)
