"""The table of encoder backends (`clipstyle_opt.encoders.registry.BACKENDS`) resolves every documented
``--clip-model`` form: its scheme, family, loader, lister and (where known before loading) tokenizer."""
from __future__ import annotations

import pytest

from clipstyle_opt.encoders import registry
from clipstyle_opt.encoders.registry import BACKENDS, backend_for, parse_model_spec

DOCUMENTED = [  # (string, scheme, family, name the loader gets), as the registry's docstring lists them
    ("ViT-B/32", "", "openai", "ViT-B/32"),
    ("openai:ViT-B/32", "openai", "openai", "ViT-B/32"),
    ("/path/to/checkpoint.pt", "", "openai", "/path/to/checkpoint.pt"),
    ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip", "open_clip", "ViT-B-32:laion2b_s34b_b79k"),
    ("open_clip:ViT-B-16-SigLIP:webli", "open_clip", "open_clip", "ViT-B-16-SigLIP:webli"),
    ("local-dir:/path", "local-dir", "open_clip", "local-dir:/path"),
    ("open_clip:ViT-B-32", "open_clip", "open_clip", "ViT-B-32"),
]


@pytest.mark.parametrize("text,scheme,family,name", DOCUMENTED)
def test_every_documented_form_resolves_to_its_row(text, scheme, family, name):
    spec = parse_model_spec(text)
    assert (spec.scheme, spec.family, spec.name, spec.text) == (scheme, family, name, text)
    assert spec.backend is backend_for(scheme) and spec.backend.family == family
    assert callable(registry._resolve(spec.backend.loader))


def test_the_table_has_one_row_per_scheme_and_one_fallback():
    schemes = [backend.scheme for backend in BACKENDS]
    assert len(set(schemes)) == len(schemes) and schemes.count("") == 1
    assert backend_for("no-such-scheme").scheme == ""


def test_every_row_names_functions_that_exist():
    for backend in BACKENDS:
        for target in (backend.loader, backend.lister, backend.token_counter):
            if target is not None:
                assert callable(registry._resolve(target)), (backend.scheme, target)
        assert (backend.token_counter is None) == (backend.context_length is None), backend.scheme


def test_openai_tokenizer_is_known_before_loading():
    counter = backend_for("openai").preload_counter()
    assert counter("") == 2 and counter("a watercolor painting") == 5  # start and end marks + 3 BPE tokens
    assert backend_for("local-dir").preload_counter() is None


def test_a_hand_built_spec_loads_by_its_family(monkeypatch):
    from clipstyle_opt.encoders import openclip

    seen = []
    monkeypatch.setattr(openclip, "load_open_clip", lambda name, device="cpu": seen.append(name) or "encoder")
    spec = registry.ModelSpec("open_clip", "ViT-B-32", None, "open_clip:ViT-B-32")  # no scheme given
    assert registry.load_encoder(spec) == "encoder" and seen == ["ViT-B-32"]
