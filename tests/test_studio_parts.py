"""The studio's parts without a server: controls from the settings' descriptions, the gallery on disk, the model
policy, the strength mix, sessions closing their runs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

from clipstyle_opt.config import PRESETS, preset_config, settings  # noqa: E402
from clipstyle_opt.errors import ConfigError  # noqa: E402
from clipstyle_opt.studio import controls  # noqa: E402
from clipstyle_opt.studio.blend import logit_mix, pixel_mix  # noqa: E402
from clipstyle_opt.studio.gallery import read_gallery, save_result  # noqa: E402
from clipstyle_opt.studio.jobs import Job, Sessions  # noqa: E402
from clipstyle_opt.studio.security import ModelPolicy  # noqa: E402


def test_controls_show_each_setting_s_own_default_and_read_back_a_preset():
    by_name = {item.name: item for item in settings()}
    for item in controls.advanced_settings():
        component = controls.control(item)
        shown = component.value
        expected = ",".join(map(str, item.default)) if item.multiple else item.default
        assert shown == expected, item.name
        assert item.help in (component.info or ""), item.name
    assert not {"clip_model", "device", "precision", "vgg"} & {i.name for i in controls.advanced_settings()}
    names = [item.name for item in controls.advanced_settings()] + list(controls.MAIN_KEYS)
    for preset in PRESETS:
        values = controls.preset_values(preset, names)
        config = preset_config(preset).replace(**controls.collect(names, values))
        assert config == preset_config(preset), preset
    assert controls.collect(["output_size", "content_layers"], ["", "relu4_2, relu5_2"]) == {
        "output_size": None, "content_layers": ("relu4_2", "relu5_2")}
    assert by_name["steps"].default == preset_config("reference").steps


def test_the_gallery_reads_back_saved_runs_with_their_settings(tiny_stylizer, photo, tmp_path):
    first = tiny_stylizer.stylize(photo, "fire", steps=1, seed=3)
    saved = [save_result(first, tmp_path, "cat.png") for _ in range(2)]
    assert saved[0].image != saved[1].image  # never overwritten
    for item in saved:
        assert item.image.exists() and item.sidecar.exists() and item.unet.exists()
    (tmp_path / "stray.png").write_bytes(saved[0].image.read_bytes())  # an image without a sidecar: skipped
    items = read_gallery(tmp_path)  # as a restarted server reads it
    assert {i.image for i in items} == {s.image for s in saved}
    assert items[0].config().seed == 3 and items[0].config().steps == 1 and items[0].unet is not None
    assert "fire" in items[0].caption
    assert read_gallery(tmp_path / "missing") == []


def test_the_model_policy_admits_what_was_given_and_nothing_else(tmp_path):
    allowed = tmp_path / "models"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "a.pt").write_bytes(b"x")
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"x")
    os.symlink(outside, allowed / "link.pt")
    policy = ModelPolicy(["given.pt"], [str(allowed)], _catalogue={"ViT-B/32", "openai:ViT-B/32"})
    assert policy.check(None) == "given.pt" and policy.check("given.pt") == "given.pt"
    assert policy.check("ViT-B/32") == "ViT-B/32"
    assert policy.check(str(allowed / "a.pt")) == str(allowed / "a.pt")
    assert policy.check(f"local-dir:{allowed / 'sub'}") == f"local-dir:{allowed / 'sub'}"
    for name in (str(outside), str(allowed / ".." / "outside.pt"), str(allowed / "link.pt"), f"local-dir:{allowed}",
                 "/etc/passwd", "local-dir:/"):
        with pytest.raises(ConfigError, match="is not offered by this server"):
            policy.check(name)


def test_the_strength_mix_has_exact_ends_and_moves_evenly():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    styled = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(pixel_mix(photo, styled, 1.0)), np.asarray(styled))
    base = np.asarray(photo.resize(styled.size, Image.Resampling.BICUBIC), dtype=np.float64)
    assert np.array_equal(np.asarray(pixel_mix(photo, styled, 0.0)), base.astype(np.uint8))
    half = np.asarray(pixel_mix(photo, styled, 0.5), dtype=np.float64)
    assert np.abs(half - (base + np.asarray(styled, dtype=np.float64)) / 2).max() <= 0.5 + 1e-9  # one rounding
    assert pixel_mix(photo, styled, 7).size == styled.size  # clamped to [0, 1]
    ends = logit_mix(base / 255, np.asarray(styled) / 255, 0.0)
    assert np.abs(ends - np.clip(base / 255, 1e-3, 1 - 1e-3)).max() < 1e-9


def test_a_closed_page_stops_its_run_after_the_current_step(tiny_stylizer, photo):
    sessions = Sessions()
    job = Job(tiny_stylizer.start(photo, "fire", steps=3), Path(photo), preview_every=0.0)
    sessions.put("page", job)
    progress = job.train()
    first = next(progress)
    assert first.step == 1 and first.preview is not None and first.eta_s is not None
    sessions.close("page")  # what the page's unload event does
    *_, last = progress
    assert last.status == "interrupted" and last.step == 1 and last.result.extra["steps_done"] == 1
    assert sessions.get("page") is None
