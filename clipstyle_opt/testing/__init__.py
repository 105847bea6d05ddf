"""Helpers for your own tests and offline use: random-init CLIP checkpoints of chosen sizes.

A random-init model exercises shapes, loading and speed; it carries no
meaning, so no test may read quality into its outputs. Float tolerances for
comparing two computations of one quantity are in `clipstyle_opt.testing.tolerances`.

The micro models that do carry meaning (trained on procedural textures, bundled
in the repository's tests/data) and the kit that made them live in the
repository's ``microclip/`` folder, which is not part of the installed package.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from clip.model import CLIP

# name -> CLIP constructor arguments (embed_dim, image_resolution, vision_layers,
# vision_width, vision_patch_size, context_length, vocab_size, text width, text heads, text layers)
RANDOM_CLIP_SIZES: dict[str, tuple] = {
    # Same architecture as OpenAI's ViT-B/32 (about 150 M parameters).
    "ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    # Tiny, for fast tests: 64 px input, 2 layers each; text heads = width // 64 as clip's build_model infers.
    "tiny": (64, 64, 2, 64, 16, 77, 49408, 64, 1, 2),
}


def make_random_clip(path: str | os.PathLike, size: str = "tiny", *, seed: int = 0,
                     half: bool = True) -> Path:
    """Write a random-init CLIP state dict that ``clip.load`` and ``--clip-model PATH`` accept.

    size: a key of `RANDOM_CLIP_SIZES` (``tiny`` or ``ViT-B/32``). half: store fp16 like OpenAI's files.
    Returns the path.
    """
    if size not in RANDOM_CLIP_SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(RANDOM_CLIP_SIZES)}")
    args = RANDOM_CLIP_SIZES[size]
    if args[7] // 64 != args[8] and args[7] >= 64:
        raise AssertionError("text heads must equal width // 64 or clip.load rebuilds a different model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(*args)
    state = model.state_dict()
    if half:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


# Tiny open_clip configs in the hub layout's open_clip_config.json form. "clip": open_clip's own
# CLIP (ViT + causal text transformer, CLIP BPE tokenizer). "siglip": SigLIP's structure (timm
# trunk with attention-pool head, non-causal text tower pooled at the last token, logit bias),
# with the CLIP BPE tokenizer, which works offline. Mean/std 0.5 as SigLIP's, so a test can tell
# that normalization comes from the folder and not from OpenAI's defaults.
RANDOM_OPEN_CLIP_CONFIGS: dict[str, dict] = {
    "clip": {
        "model_cfg": {"embed_dim": 32,
                      "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                      "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                           "resize_mode": "squash"},
    },
    "siglip": {
        "model_cfg": {"embed_dim": 32, "init_logit_bias": -10, "custom_text": True,
                      "vision_cfg": {"image_size": 32, "timm_model_name": "clipstyle_vit_micro",
                                     "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
                      "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                                   "no_causal_mask": True, "proj_bias": True, "pool_type": "last"}},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                           "resize_mode": "squash"},
    },
}


def make_random_open_clip(folder: str | os.PathLike, kind: str = "clip", *, seed: int = 0) -> Path:
    """Write a random-init open_clip model as a ``local-dir:`` folder (config + safetensors weights).

    kind: a key of `RANDOM_OPEN_CLIP_CONFIGS`. Returns the folder; pass ``local-dir:FOLDER`` as
    ``--clip-model``. Needs the open_clip extra.
    """
    import json

    from safetensors.torch import save_file

    from ..encoders.openclip import import_open_clip, register_micro_trunks

    if kind not in RANDOM_OPEN_CLIP_CONFIGS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(RANDOM_OPEN_CLIP_CONFIGS)}")
    open_clip = import_open_clip()
    register_micro_trunks()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(RANDOM_OPEN_CLIP_CONFIGS[kind], indent=2))
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        model = open_clip.create_model(f"local-dir:{folder}", device="cpu")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder

