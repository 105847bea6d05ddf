"""Helpers for tests and offline use: random-init CLIP checkpoints of chosen sizes.

A random-init model exercises shapes, loading and speed; it carries no
meaning, so no test may read quality into its outputs.
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
