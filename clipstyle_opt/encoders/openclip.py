"""OpenCLIP and SigLIP models through open_clip.

Three ways to name one (the part after ``open_clip:`` or ``local-dir:`` in
``--clip-model``):

- ``open_clip:ARCH:TAG``: an architecture and pretrained tag as open_clip
  names them (``ViT-B-32:laion2b_s34b_b79k``, ``ViT-B-16-SigLIP:webli``),
  downloaded once through the Hugging Face hub into ``$CLIPSTYLE_CACHE/open_clip``;
- ``local-dir:/path``: a folder in open_clip's hub layout
  (``open_clip_config.json`` with ``model_cfg`` and ``preprocess_cfg``, weights
  as ``open_clip_model.safetensors`` or ``.bin``, tokenizer files), which is
  how people keep models offline;
- ``open_clip:ARCH`` alone builds the architecture with random weights (for
  benchmarks and tests only; it carries no meaning).

Input size, mean/std and tokenizer come with the model: SigLIP uses mean =
std = 0.5, which open_clip knows only from a pretrained tag or a folder's
``preprocess_cfg`` (without them it falls back to OpenAI's values, wrong for
SigLIP). Images are squashed to the square input size, as open_clip's
SigLIP preprocessing does.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..errors import ModelUnavailableError, first_line
from .base import WeightsCastOnce, resize_and_normalize
from .prompts import check_fits, max_prompt_tokens
from .templates import IMAGENET_TEMPLATES, fill_templates
from .weights import cache_dir

#: The install line printed when open_clip (the ``open_clip`` extra) is missing.
INSTALL_HINT = "pip install 'clipstyle_opt[open_clip]' (brings open_clip_torch, timm and transformers)"
HUB_HOST = ("huggingface.co", 443)
NETWORK_PROBE_TIMEOUT_S = 3.0
"""Seconds to wait for the hub before concluding there is no network. The hub client itself
retries for about 50 s when offline (unless HF_HUB_OFFLINE=1), so we ask first."""


def import_open_clip() -> Any:
    """The open_clip module, or one clear line on how to install it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import open_clip
    except ImportError:
        raise ModelUnavailableError(f"open_clip models need the open_clip extra: {INSTALL_HINT}") from None
    return open_clip


def attention_sequence_first(model: nn.Module) -> int:
    """Run open_clip's own transformers (ViT-B-32's towers, CLIP-style text towers) sequence-first.

    open_clip builds them batch-first, (N, L, D); torch's ``nn.MultiheadAttention`` then
    transposes to (L, N, D) inside every call and its batched matmuls copy strided tensors, which
    in bf16 on the CPU took 62 % of the tower's time. Sequence-first is open_clip's own other
    setting (OpenAI CLIP's layout): the same weights and the same function up to float rounding,
    one transpose per tower instead. Measured (Intel Xeon with AMX, 2 threads, 16 crops at 224 px,
    bf16 weights): ViT-B-32's image tower forward + backward 3.3 s batch-first, 0.86 s
    sequence-first. timm towers (SigLIP) attend batch-first without those copies and are left
    alone, as are blocks open_clip requires batch-first. Returns the number of blocks switched.
    """
    open_clip_transformer = import_open_clip().transformer
    switched = 0
    for module in model.modules():
        if not isinstance(module, open_clip_transformer.Transformer) or not module.batch_first:
            continue
        blocks = list(module.resblocks)
        if not all(isinstance(getattr(block, "attn", None), nn.MultiheadAttention) for block in blocks):
            continue
        module.batch_first = False
        for block in blocks:
            block.attn.batch_first = False
        switched += len(blocks)
    return switched


def timm_attention_layers(model: nn.Module) -> list[nn.Module]:
    """timm's attention layers in ``model`` (SigLIP's ViT blocks and attention-pool head): the
    modules that carry timm's ``fused_attn`` switch between ``scaled_dot_product_attention``
    and its explicit form (q k^T, softmax, times v)."""
    return [module for module in model.modules() if isinstance(getattr(module, "fused_attn", None), bool)]


class OpenClipEncoder(WeightsCastOnce):
    """A frozen open_clip model (CLIP-style or SigLIP) with the project's encoding steps.

    Images: NCHW RGB float in [0, 1], any size; resized (bicubic) to the
    model's input size unless already there, then normalized with the
    model's own mean/std. Embeddings are float32 unit vectors.
    """

    family = "open_clip"

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, image_size: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model.float().eval().requires_grad_(False)
        attention_sequence_first(self.model)
        self._timm_attention = [(layer, layer.fused_attn) for layer in timm_attention_layers(self.model)]
        self.tokenizer = tokenizer
        self.name = name
        self.input_resolution = int(image_size)
        self.context_length = int(getattr(tokenizer, "context_length", 0) or 77)
        self._limits: dict[tuple[str, ...], int] = {}  # templates -> max_prompt_tokens
        with torch.no_grad():
            probe = self.model.encode_text(self.tokenizer(["a"]))
        self.embedding_width = int(probe.shape[-1])
        self.register_buffer("mean", torch.tensor(tuple(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tuple(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def _cast_weights(self, dtype: torch.dtype) -> None:
        # Under autocast instead, open_clip's ViT-B-32 was slower in bf16 than in fp32 on a 2-core
        # CPU (benchmarks/RESULTS.md). Every tensor is cast, norms too: CUDA's layer_norm refuses
        # bf16 inputs with fp32 weights (the CPU's takes them), and both compute the statistics in
        # fp32 internally. Images are cast at the tower's entry, features back to fp32 at its exit.
        for tensor in [*self.model.parameters(), *self.model.buffers()]:
            if tensor.is_floating_point():
                tensor.data = tensor.data.to(dtype)

    @property
    def device(self) -> torch.device:
        """The device the encoder's weights are on."""
        return self.mean.device

    def compile_image_tower(self) -> None:
        """Compile the image tower with `torch.compile` (once; tens of seconds, then faster steps)."""
        if not isinstance(self.model.visual, torch._dynamo.eval_frame.OptimizedModule):
            self.model.visual = torch.compile(self.model.visual)

    def _precision(self) -> contextlib.AbstractContextManager:
        stack = contextlib.ExitStack()
        cpu = self.device.type == "cpu"
        if cpu:  # plain matmul attention, as for the OpenAI backend
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        # timm towers (SigLIP): on the CPU, timm's explicit attention rather than torch's math kernel,
        # which in bf16 copies q, k, v to fp32 and back and scans each row for -inf around its
        # softmax. Same function up to float rounding (tested). Measured: see benchmarks/RESULTS.md.
        # On a GPU timm's own choice (fused kernels) stays.
        for layer, fused in self._timm_attention:
            layer.fused_attn = fused and not cpu
        return stack

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Squash to the input size (bicubic) and normalize with the model's own mean/std."""
        return resize_and_normalize(images, self.input_resolution, self.mean, self.std)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalized embeddings (N, D) of ``images`` (N, 3, H, W) in [0, 1], any size: resized to the
        model's input size and normalized with its mean/std first. Gradients flow back to ``images``.
        """
        with self._precision():
            features = self.model.encode_image(self.preprocess(images).to(self._dtype or torch.float32))
        return F.normalize(features.float(), dim=-1)

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's context, marks included (its own tokenizer)."""
        count = token_count(self.tokenizer, text)
        assert count is not None, "check_prompt skips tokenizers it cannot count"
        return count

    def check_prompt(self, text: str, what: str = "the prompt",
                     templates: Sequence[str] = IMAGENET_TEMPLATES) -> str:
        """``text`` if it fits this model's context through every template, else one-line `ConfigError`
        naming this encoder (`clipstyle_opt.encoders.prompts.check_fits`). open_clip's tokenizers cut
        long texts silently; we refuse them, as for OpenAI CLIP."""
        templates = tuple(templates)
        if token_count(self.tokenizer, "") is None:  # a tokenizer we cannot count with: not checked
            return text
        limit = self._limits.get(templates)
        if limit is None:
            limit = self._limits[templates] = max_prompt_tokens(self.context_length, templates, self.count_tokens)
        return check_fits(text, what, label=self.name, count=self.count_tokens, context_length=self.context_length,
                          templates=templates, limit=limit)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalized embeddings (N, D) of ``texts`` as written (no templates); a text the tokenizer
        would cut raises `ConfigError`.
        """
        for text in texts:
            self.check_prompt(text, "a text", templates=())
        with self._precision():
            features = self.model.encode_text(self._tokens(texts))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_prompt(self, text: str, templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
        """One L2-normalized embedding (1, D) of ``text``: the mean over ``templates`` (each filled with the
        text), normalized again. A text too long for any template raises `ConfigError`.
        """
        self.check_prompt(text, "the text", templates=templates)
        with self._precision():
            features = self.model.encode_text(self._tokens(fill_templates(text, tuple(templates))))
        return F.normalize(features.float().mean(dim=0), dim=-1)


def token_count(tokenizer: Any, text: str) -> int | None:
    """Tokens ``text`` takes in ``tokenizer``'s context, start/end marks included, after the tokenizer's
    own cleaning (SigLIP's lower-cases and strips punctuation); None: a tokenizer we cannot count with."""
    if hasattr(tokenizer, "encoder") and hasattr(tokenizer, "encode"):  # open_clip's SimpleTokenizer (CLIP BPE)
        return len(tokenizer.encode(text)) + 2
    inner = getattr(tokenizer, "tokenizer", None)  # HFTokenizer wraps a transformers tokenizer
    if inner is not None and callable(inner):
        clean = getattr(tokenizer, "clean_fn", None) or (lambda t: t)
        return len(inner(clean(text))["input_ids"])
    return None


def _preprocess_values(model: nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise ModelUnavailableError(f"non-square input size {tuple(size)} is not supported")
        size = size[0]
    mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    return int(size), mean, std


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(HUB_HOST, timeout=NETWORK_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _offline_hint(label: str) -> str:
    return (f"cannot download {label}: no network and not in the cache ({cache_dir('open_clip')}); "
            "download it once with network, or pass a local folder in open_clip's hub layout "
            "with --clip-model local-dir:/path/to/folder")


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """While loading: when there is no network, put the Hugging Face hub client in offline mode,
    so that a file missing from the cache (a tokenizer whose weights are cached, say) fails at once
    instead of after ~50 s of retries. huggingface_hub reads the flag from its constants module."""
    if not offline:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def pretrained_is_cached(open_clip: Any, arch: str, tag: str) -> bool:
    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    hub = cfg.get("hf_hub", "")
    if not hub:
        return False
    repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return any(isinstance(try_to_load_from_cache(repo, name, cache_dir=str(cache_dir("open_clip"))), str)
               for name in names)


def optional_open_clip() -> Any:
    """The open_clip module, or None when it is not installed (for listings that work without it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import open_clip
    except ImportError:
        return None
    return open_clip


def size_and_width(open_clip: Any, arch: str) -> tuple[int | None, int | None]:
    """(input px, embedding width) of an open_clip architecture from its model config (None, None if unknown)."""
    cfg = open_clip.get_model_config(arch) or {}
    size = cfg.get("vision_cfg", {}).get("image_size")
    if isinstance(size, (tuple, list)):
        size = size[0]
    return size, cfg.get("embed_dim")


def known_open_clip_models() -> list[dict[str, Any]]:
    """`clipstyle models` rows for every open_clip architecture and pretrained tag ([] without open_clip)."""
    open_clip = optional_open_clip()
    if open_clip is None:
        return []
    rows = []
    for arch, tag in open_clip.list_pretrained():
        size, width = size_and_width(open_clip, arch)
        rows.append({"model": f"open_clip:{arch}:{tag}", "family": "open_clip", "input_px": size,
                     "width": width, "cached": pretrained_is_cached(open_clip, arch, tag)})
    return rows


#: Tiny timm vision trunks by name (arguments of timm's VisionTransformer) for the bundled micro
#: models and tests: registered with timm so an open_clip config can name them.
MICRO_TRUNKS = {
    # name: timm VisionTransformer arguments. Tiny trunks for the project's micro models and tests;
    # timm must know a trunk by name before open_clip can build a config that names it.
    "clipstyle_vit_micro": dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                                class_token=False, global_pool="map"),
    # The bundled micro SigLIP's trunk (tests/data/micro_siglip): the micro CLIP's image tower sizes
    # (64 px, patch 8, width 192, 4 layers, 3 heads) in SigLIP's layout (no class token, attention
    # pool), with a LayerNorm before the blocks as CLIP's ln_pre: in 250-step trials it learned
    # patterns faster than without (19 % against 12 % held-out pattern accuracy, sigmoid loss).
    "clipstyle_vit_micro64": dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3, mlp_ratio=4.0,
                                  class_token=False, global_pool="map", pre_norm=True),
    # A trial trunk, not bundled: the same at patch 16 (4 x 4 tokens instead of 8 x 8), for a cheaper
    # step (0.40 s against 0.55 s, Intel Xeon). It did not learn the patterns (45 % after 2800 steps, 88 % at patch
    # 8 after 3000 with the same recipe; tests/data/README), so the bundled model keeps patch 8.
    "clipstyle_vit_micro64_p16": dict(img_size=64, patch_size=16, embed_dim=192, depth=4, num_heads=3,
                                      mlp_ratio=4.0, class_token=False, global_pool="map", pre_norm=True),
}


def register_micro_trunks() -> None:
    """Register `MICRO_TRUNKS` with timm (idempotent)."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    for name, arguments in MICRO_TRUNKS.items():
        if name in timm.list_models(name):
            continue

        def build(pretrained: bool = False, _arguments: dict = arguments, **kwargs: Any) -> nn.Module:
            accepted = inspect.signature(VisionTransformer.__init__).parameters
            # timm adds its own bookkeeping (pretrained_cfg, ...), which the constructor does not take
            return VisionTransformer(**{**_arguments, **{k: v for k, v in kwargs.items() if k in accepted}})

        build.__name__ = name
        build.__module__ = "clipstyle_opt.encoders.openclip"
        register_model(build)
        # timm's register_model appends the name to its module's __all__; a trunk is not this module's API
        if name in __all__:
            __all__.remove(name)


def load_open_clip(spec: str, device: torch.device | str = "cpu") -> OpenClipEncoder:
    """Load ``ARCH[:TAG]`` or ``local-dir:/path`` (see the module docstring) as an `OpenClipEncoder`."""
    open_clip = import_open_clip()
    register_micro_trunks()
    if spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise ModelUnavailableError(f"{folder} is not an open_clip model folder (no open_clip_config.json)")
        try:
            json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))["model_cfg"]
        except (ValueError, KeyError, OSError) as exc:
            raise ModelUnavailableError(f"{folder}/open_clip_config.json is not a valid open_clip config "
                                        f"({type(exc).__name__}: {exc})") from None
        model_name, pretrained, label = f"local-dir:{folder}", None, f"open_clip folder {folder}"
        offline = True  # everything is in the folder; never let the hub client look elsewhere
    else:
        arch, _, tag = spec.partition(":")
        if arch not in open_clip.list_models():
            raise ModelUnavailableError(f"open_clip has no architecture {arch!r}; `clipstyle models` lists the known ones")
        if tag and not open_clip.get_pretrained_cfg(arch, tag):
            tags = ", ".join(t for a, t in open_clip.list_pretrained() if a == arch) or "none"
            raise ModelUnavailableError(f"open_clip has no pretrained tag {tag!r} for {arch} (known: {tags})")
        model_name, pretrained, label = arch, tag or None, f"open_clip model {arch}:{tag}"
        hub_tokenizer = (open_clip.get_model_config(arch) or {}).get("text_cfg", {}).get("hf_tokenizer_name")
        offline = bool(tag or hub_tokenizer) and not _hub_reachable()
        if offline and tag and not pretrained_is_cached(open_clip, arch, tag):
            raise ModelUnavailableError(_offline_hint(label))
    try:
        with warnings.catch_warnings(), _hub_offline(offline):
            warnings.simplefilter("ignore")
            model = open_clip.create_model(model_name, pretrained=pretrained, device="cpu",
                                           cache_dir=str(cache_dir("open_clip")))
            tokenizer = open_clip.get_tokenizer(model_name, cache_dir=str(cache_dir("open_clip")))
    except ModelUnavailableError:
        raise
    except Exception as exc:  # open_clip, timm and the hub raise many kinds of errors
        if offline and not spec.startswith("local-dir:"):  # e.g. weights cached, tokenizer not
            raise ModelUnavailableError(_offline_hint(f"{label} (its tokenizer)")) from None
        raise ModelUnavailableError(f"cannot load {label}: {first_line(exc)[:300]}") from None
    size, mean, std = _preprocess_values(model)
    encoder = OpenClipEncoder(model, tokenizer, name=f"open_clip:{spec}" if not spec.startswith("local-dir:") else spec,
                              image_size=size, mean=mean, std=std)
    return encoder.to(device)


__all__ = ["OpenClipEncoder", "load_open_clip", "import_open_clip", "register_micro_trunks", "token_count",
           "known_open_clip_models", "optional_open_clip", "size_and_width",
           "INSTALL_HINT", "MICRO_TRUNKS"]
