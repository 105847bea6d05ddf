"""The micro SigLIP's parts: its open_clip config, its tokenizer, its loss and its folder.

Used by ``python -m microclip.train_micro_clip --family siglip``, through
`SiglipFamily` (what that family changes in the training loop). The model follows
SigLIP's structure as open_clip builds it (``CustomTextCLIP``): a timm ViT
trunk with an attention-pool ("map") head and no projection, a non-causal
text transformer pooled at the last position, a learned logit scale *and*
bias, and inputs normalized with mean = std = 0.5 and squash-resized. It is
saved in open_clip's hub layout, so ``--clip-model local-dir:FOLDER`` loads it
through the same code as a downloaded ``timm/ViT-*-SigLIP*`` folder.

The tokenizer is a unigram model (SentencePiece's algorithm, as SigLIP's)
trained with HuggingFace ``tokenizers`` on every caption the texture
generator can produce, plus the alphabet so that any lower-case text
tokenizes (unseen words fall apart into letters). Training needs
sentencepiece; loading needs only transformers' ``tokenizers``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import string
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.nn import functional as F

from clipstyle_opt.encoders.templates import IMAGENET_TEMPLATES
from microclip.contrastive import LossFn, contrastive_loss, image_to_text_loss
from microclip.captions import CAPTION_TEMPLATES, COLOUR_ONLY_TEMPLATES, PATTERN_ONLY_TEMPLATES, PHOTO_CAPTION
from microclip.textures import COLOURS, PATTERNS

#: SigLIP's input normalization (RGB mean and std of [0, 1] images).
SIGLIP_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
SIGLIP_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

#: Special tokens, in id order (SigLIP's layout: pad 0, eos 1, unk 2, no bos).
PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def model_config(*, trunk: str, image_size: int, embed_dim: int, context_length: int, vocab_size: int,
                 text_width: int, text_heads: int, text_layers: int) -> dict[str, Any]:
    """The ``open_clip_config.json`` content (model_cfg + preprocess_cfg) of a micro SigLIP.

    trunk: a timm model name registered by `clipstyle_opt.encoders.openclip.register_micro_trunks`;
    with ``timm_proj: none`` (as SigLIP) its width must equal ``embed_dim``.
    """
    config = {
        "model_cfg": {
            "embed_dim": embed_dim,
            "init_logit_bias": -10,  # SigLIP's initialization (scale starts at log 10, see `siglip_init`)
            "custom_text": True,
            "vision_cfg": {"image_size": image_size, "timm_model_name": trunk, "timm_model_pretrained": False,
                           "timm_pool": "map", "timm_proj": "none"},
            "text_cfg": {"context_length": context_length, "vocab_size": vocab_size,
                         # local-dir models read the tokenizer from their own folder whatever this names;
                         # it must be set, or open_clip picks a tokenizer that downloads.
                         "hf_tokenizer_name": "clipstyle/micro-siglip",
                         "tokenizer_kwargs": {"clean": "canonicalize"},
                         "width": text_width, "heads": text_heads, "layers": text_layers,
                         "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
                         "norm_kwargs": {"eps": 1e-6}},
        },
        "preprocess_cfg": {"mean": list(SIGLIP_MEAN), "std": list(SIGLIP_STD), "interpolation": "bicubic",
                           "resize_mode": "squash"},
    }
    return config


def caption_corpus() -> list[str]:
    """Every caption shape the texture generator writes, canonicalized as the tokenizer will see it."""
    texts = [PHOTO_CAPTION, "a Photo"]
    for colour in COLOURS:
        texts += [t.format(c=colour) for t in COLOUR_ONLY_TEMPLATES]
        for pattern in PATTERNS:
            texts += [t.format(c=colour, p=pattern) for t in CAPTION_TEMPLATES]
    for pattern in PATTERNS:
        texts += [t.format(p=pattern) for t in PATTERN_ONLY_TEMPLATES]
    bare = [PHOTO_CAPTION, *COLOURS, *PATTERNS, *(f"{c} {p}" for c in COLOURS for p in PATTERNS)]
    texts += [t.format(b) for t in IMAGENET_TEMPLATES for b in bare]
    return [canonical(t) for t in texts]


def canonical(text: str) -> str:
    """SigLIP's text cleaning as open_clip applies it ("canonicalize": lower case, no punctuation)."""
    return " ".join(text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower().split())


def train_tokenizer(vocab_size: int = 256) -> Any:
    """A unigram tokenizer trained on `caption_corpus`, wrapped as a transformers fast tokenizer.

    Trained with sentencepiece (SigLIP's tokenizer is a sentencepiece unigram model), then
    rebuilt as a HuggingFace ``tokenizers`` Unigram with the same pieces and scores, which is what
    ``AutoTokenizer`` reads offline from ``tokenizer.json`` (no sentencepiece needed to load it).
    Why not ``tokenizers``' own UnigramTrainer: on a corpus this small it kept mostly single
    letters ("photo" became 5 tokens). vocab_size is an upper bound: the corpus has ~120 pieces.
    Every lower-case letter and digit is a piece, so unseen words fall apart into letters.
    """
    import io

    import sentencepiece
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    corpus = caption_corpus() + list(string.ascii_lowercase + string.digits)
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=proto, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece=PAD, eos_piece=EOS, unk_piece=UNK,
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto.getvalue())
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    # transformers 5 gotcha: building from a vocab *file* silently gives a 4-token vocabulary; pass pieces.
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=processor.unk_id(), byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}",
                                                             special_tokens=[(EOS, processor.eos_id())])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   model_max_length=1_000_000)


def longest_caption(tokenizer: Any) -> tuple[int, str]:
    """(token count with the end-of-text token, caption) of the longest caption in `caption_corpus`."""
    return max((len(tokenizer(text).input_ids), text) for text in caption_corpus())


def tokenize(tokenizer: Any, texts: Sequence[str], context_length: int) -> torch.Tensor:
    """Token ids (N, context_length), padded to the full context as open_clip's HFTokenizer does
    (SigLIP pools the last position, so the padding length matters)."""
    return tokenizer([canonical(t) for t in texts], return_tensors="pt", max_length=context_length,
                     padding="max_length", truncation=True).input_ids


def build_model(config: dict[str, Any], init: str = "timm") -> torch.nn.Module:
    """A freshly initialized ``CustomTextCLIP`` from `model_config`'s output.

    init: ``timm`` keeps timm's initialization of the image trunk; ``clip`` re-initializes it as
    OpenAI's CLIP does (`clip_initialization`; how the bundled micro SigLIP was made).
    """
    import open_clip

    from clipstyle_opt.encoders.openclip import register_micro_trunks

    register_micro_trunks()
    cfg = dict(config["model_cfg"])
    cfg.pop("custom_text")
    model = open_clip.CustomTextCLIP(**cfg, init_logit_scale=math.log(10))
    model.visual.preprocess_cfg = dict(config["preprocess_cfg"])
    if init == "clip":
        clip_initialization(model.visual.trunk)
    return model


def clip_initialization(trunk: torch.nn.Module) -> None:
    """Re-initialize a timm ViT trunk as OpenAI's CLIP initializes its image tower.

    That is PyTorch's default init for every linear layer (uniform, about 1/sqrt(3 fan_in) std:
    0.042 at width 192) and a position embedding of std width^-0.5 (0.072), where timm draws
    linear weights and the position embedding with std 0.02. Measured on the texture patterns
    alone (200 supervised steps, 512 held-out images): CLIP's own image tower reached 85 % pattern
    accuracy, this trunk 46 % with timm's init, 50 % with only the position embedding rescaled and
    83 % with both. Under the contrastive losses (250 clean steps, held-out zero-shot pattern):
    softmax 32 % -> 41 %, sigmoid 25 % -> 28 % (microclip/README). Only the starting weights change.
    """
    for module in trunk.modules():
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    pos_embed = getattr(trunk, "pos_embed", None)
    if pos_embed is not None:
        with torch.no_grad():
            pos_embed.normal_(0.0, pos_embed.shape[-1] ** -0.5)


def sigmoid_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                 logit_bias: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss: -sum over (image, text) pairs of log sigmoid(z (t cos + b)) / N.

    z = +1 where the text describes the image (``positives``, (N, M) bool), -1 elsewhere;
    t = exp(logit_scale), b = logit_bias. Several positives per row need no special handling.
    """
    cos = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    logits = logit_scale.exp() * cos + logit_bias
    signs = positives.float() * 2 - 1
    return -F.logsigmoid(signs * logits).sum() / image_features.shape[0]


def save_folder(model: torch.nn.Module, tokenizer: Any, config: dict[str, Any], folder: Path) -> int:
    """Write the hub-layout folder (config, fp16 safetensors, tokenizer); returns its size in bytes."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    tokenizer.save_pretrained(str(folder))
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def softmax_step_count(args: argparse.Namespace) -> int:
    """How many of the first steps --softmax-first trains with CLIP's softmax loss."""
    return round(args.softmax_first * args.steps)


class SiglipFamily:
    """What ``--family siglip`` changes in the trainer's loop: model, tokens, loss, kernels, saving."""

    def __init__(self, args: argparse.Namespace) -> None:
        from clipstyle_opt.encoders.openclip import MICRO_TRUNKS

        self.tokenizer = train_tokenizer(args.vocab_size)
        longest = longest_caption(self.tokenizer)
        if longest[0] > args.context_length:
            # Checked here, not after training: the final evaluation's templated captions would
            # otherwise fail to fit half an hour later (seen with sentencepiece 0.2.3, 140 pieces).
            raise SystemExit(
                f"error: the tokenizer splits {longest[1]!r} into {longest[0]} tokens, over --context-length "
                f"{args.context_length} (sentencepiece {importlib.metadata.version('sentencepiece')}, "
                f"{len(self.tokenizer)} pieces); raise --context-length, or install the pinned sentencepiece "
                f"(repository root): pip install -c constraints.txt -e '.[train]'")
        width = MICRO_TRUNKS[args.siglip_trunk]["embed_dim"]
        self.config = model_config(
            trunk=args.siglip_trunk, image_size=args.image_resolution, embed_dim=width,
            context_length=args.context_length, vocab_size=len(self.tokenizer), text_width=args.text_width,
            text_heads=max(1, args.text_width // 64), text_layers=args.text_layers)
        self.context_length = args.context_length
        self.init = args.siglip_init
        self.loss_kind = args.siglip_loss
        self.softmax_steps = softmax_step_count(args)
        self.mean, self.std = SIGLIP_MEAN, SIGLIP_STD

    def build(self) -> torch.nn.Module:
        return build_model(self.config, self.init)

    def tokens(self, captions: list[str]) -> torch.Tensor:
        return tokenize(self.tokenizer, captions, self.context_length)

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
            return sigmoid_loss(image_features, text_features, scale, bias, positives)
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
        return save_folder(model, self.tokenizer, self.config, out)

    def reload(self, out: Path) -> torch.nn.Module:
        from clipstyle_opt.encoders.openclip import load_open_clip
        return load_open_clip(f"local-dir:{out}")
