import json

import pytest

from clipstyle_opt import ConfigError, StyleConfig, preset_config
from clipstyle_opt.config import read_config_file


def test_defaults_are_the_reference_method():
    c = StyleConfig()
    assert (c.lambda_dir, c.lambda_patch, c.lambda_c, c.lambda_tv) == (500, 9000, 150, 2e-3)
    assert (c.lr, c.lr_decay_every, c.lr_decay, c.steps) == (5e-4, 100, 0.5, 200)
    assert (c.n_crops, c.crop_size, c.distortion, c.threshold) == (64, 128, 0.5, 0.7)
    assert (c.size, c.unet_width, c.source_text, c.clip_model) == (512, 16, "a Photo", "ViT-B/32")
    assert c.content_layers == ("relu4_2", "relu5_2")  # what the reference computes


@pytest.mark.parametrize("bad, message", [
    ({"size": 10}, "size must be in"), ({"lr": 0}, "lr must be > 0"), ({"distortion": 1.5}, "distortion"),
    ({"vgg": "vgg11"}, "vgg must be one of"), ({"device": "tpu"}, "device must be"),
    ({"content_layers": ["conv9_9"]}, "unknown VGG layer"), ({"content_layers": ["conv5_4"]}, "VGG19 only"),
    ({"steps": 1.5}, "integer"), ({"lambda_c": float("nan")}, "finite"), ({"lambda_tv": -1}, ">= 0"),
])
def test_validation_gives_one_clear_message(bad, message):
    with pytest.raises(ConfigError, match=message):
        StyleConfig(**bad)


def test_json_and_yaml_round_trip():
    c = StyleConfig(steps=7, lambda_c=300.0, content_layers=("conv4_2",), output_size=640)
    assert StyleConfig.from_json(c.to_json()) == c
    assert StyleConfig.from_yaml(c.to_yaml()) == c
    assert json.loads(c.to_json())["content_layers"] == ["conv4_2"]


def test_unknown_keys_and_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        StyleConfig.from_dict({"stepz": 3})
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_config_file(bad)
    partial = tmp_path / "c.yaml"
    partial.write_text("steps: 9\n")
    assert read_config_file(partial) == {"steps": 9}


def test_preset_preview_and_overrides():
    c = preset_config("preview", seed=3)
    assert c.size == 256 and c.n_crops == 16 and c.seed == 3
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("ultra")
