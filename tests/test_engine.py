"""The optimization loop through the public API (random-init CLIP: no quality claims)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import clipstyle_opt
from clipstyle_opt import ConfigError, OutputExistsError, StyleConfig, Stylizer
from clipstyle_opt.unet.model import apply_unet, seeded_unet
from clipstyle_opt.imageio import load_image, resize
from clipstyle_opt.testing import tolerances


def test_loop_lowers_the_total_loss(tiny_stylizer, photo):
    result = tiny_stylizer.stylize(photo, "fire", steps=30, lr=2e-3, lr_decay_every=1000)
    totals = [h["total"] for h in result.history]
    assert len(totals) == 30
    assert sum(totals[-3:]) / 3 < 0.8 * sum(totals[:3]) / 3


def test_same_seed_same_image_other_seed_other_image(tiny_stylizer, photo):
    # 128 px with 16 overlapping crops of 64 px: big enough for torch to parallelize the crop
    # gradient's scatter, which made runs differ before the crop gather got a fixed-order backward.
    settings = dict(size=128, n_crops=16, crop_size=64, steps=3, max_output_size=128)
    a = tiny_stylizer.stylize(photo, "fire", seed=5, **settings)
    b = tiny_stylizer.stylize(photo, "fire", seed=5, **settings)
    c = tiny_stylizer.stylize(photo, "fire", seed=6, **settings)
    assert torch.equal(a.tensor, b.tensor)
    assert [h["total"] for h in a.history] == [h["total"] for h in b.history]
    assert not torch.equal(a.tensor, c.tensor)


def test_output_keeps_the_photos_aspect_and_size(tiny_stylizer, photo):
    result = tiny_stylizer.stylize(photo, "fire", steps=1, max_output_size=4096)
    assert result.training_size == (40, 64)  # 300x451 -> long side 64, multiples of 8
    assert tuple(result.tensor.shape) == (1, 3, 300, 451)  # original resolution
    capped = tiny_stylizer.stylize(photo, "fire", steps=1)
    assert tuple(capped.tensor.shape[-2:]) == (64, 96)  # long side capped at max_output_size=96
    sized = tiny_stylizer.stylize(photo, "fire", steps=1, output_size=200)
    assert max(sized.tensor.shape[-2:]) == 200


def test_encoders_receive_no_gradients(tiny_stylizer, photo):
    tiny_stylizer.stylize(photo, "fire", steps=2)
    assert all(p.grad is None for p in tiny_stylizer.clip.parameters())
    assert all(p.grad is None for p in tiny_stylizer.vgg.parameters())


def test_history_callback_and_style_image(tiny_stylizer, photo):
    seen = []
    result = tiny_stylizer.stylize(photo, "fire", style_image=photo.parent / "coffee.png",
                                   callback=lambda info: seen.append(info.step))
    assert seen == [1, 2, 3, 4]
    assert all(h["style"] > 0 for h in result.history)
    assert set(result.history[0]) >= {"dir", "patch", "content", "tv", "style", "total", "lr"}
    plain = tiny_stylizer.stylize(photo, "fire")
    assert all(h["style"] == 0 for h in plain.history)


def test_lr_schedule_halves_every_decay_period(tiny_stylizer, photo):
    result = tiny_stylizer.stylize(photo, "fire", steps=5, lr_decay_every=2, lr=1e-3)
    assert [h["lr"] for h in result.history] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


def test_inputs_as_pil_and_tensor(tiny_stylizer, photo):
    pil = Image.open(photo)
    a = tiny_stylizer.stylize(pil, "fire", steps=1, seed=1)
    tensor = torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1)
    b = tiny_stylizer.stylize(tensor, "fire", steps=1, seed=1)
    assert torch.allclose(a.tensor, b.tensor, atol=1e-6)
    assert a.content_path is None


def test_encoder_settings_cannot_change_per_call(tiny_stylizer, photo):
    with pytest.raises(ConfigError, match="cannot change per call"):
        tiny_stylizer.stylize(photo, "fire", vgg="vgg19")
    with pytest.raises(ConfigError, match="is empty"):
        tiny_stylizer.stylize(photo, "  ")


def test_result_save_writes_metadata_and_refuses_overwrite(tiny_stylizer, photo, tmp_path):
    result = tiny_stylizer.stylize(photo, "fire")
    path = result.save(tmp_path / "out.png")
    with Image.open(path) as img:
        assert img.text["prompt"] == "fire"
        assert json.loads(img.text["config"])["lambda_patch"] == 9000
        assert json.loads(img.text["clipstyle"])["seed"] == 0
    sidecar = json.loads((tmp_path / "out.json").read_text())
    assert sidecar["prompt"] == "fire" and sidecar["content"] == str(photo)
    assert sidecar["versions"]["torch"] == torch.__version__.split("+")[0]
    assert path.stat().st_mode & 0o644 == 0o644, "outputs get the usual permissions, not mkstemp's 0600"
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        result.save(path)
    assert path.read_bytes() == before
    result.save(path, overwrite=True)
    jpg = result.save(tmp_path / "out2.jpg")
    assert Image.open(jpg).format == "JPEG"


def test_saved_unet_restyles_the_same_image(tiny_stylizer, photo, tmp_path):
    result = tiny_stylizer.stylize(photo, "fire")
    unet_path = result.save_unet(tmp_path / "style.unet.pt")
    again = clipstyle_opt.apply_unet_file(unet_path, photo, output_size=96, device="cpu")
    assert torch.allclose(again, result.tensor, atol=1e-5)


def test_module_level_stylize_loads_its_own_encoders(tiny_config, photo):
    result = clipstyle_opt.stylize(photo, "fire", config=tiny_config, steps=1)
    assert result.image.size == (96, 64)
    assert isinstance(result.config, StyleConfig) and result.config.steps == 1


def test_compiled_image_tower_gives_the_same_losses(tiny_config, tiny_clip_path, vgg16, photo):
    from clipstyle_opt.encoders.clip import load_clip

    eager = Stylizer(tiny_config, clip=load_clip(str(tiny_clip_path)), vgg=vgg16).stylize(photo, "fire", steps=2)
    compiled_config = tiny_config.replace(compile=True)
    stylizer = Stylizer(compiled_config, clip=load_clip(str(tiny_clip_path)), vgg=vgg16)
    assert isinstance(stylizer.clip.model.visual, torch._dynamo.eval_frame.OptimizedModule)
    compiled = stylizer.stylize(photo, "fire", steps=2)
    # Two steps: step 2's output differs from eager only through Adam's reading of rounding noise
    # in gradients that are exactly zero (biases before InstanceNorm), which do not change it
    # (see test_fast_path_equivalence). Compiled kernels fuse differently: gradient-level bound.
    for a, b in zip(eager.history, compiled.history):
        for key in ("dir", "patch", "content", "tv", "total"):
            assert abs(a[key] - b[key]) <= tolerances.reordered_gradient() * max(1.0, abs(b[key])), key


def test_cpu_allocator_tuning_takes_on_glibc():
    import platform

    from clipstyle_opt.devices import reuse_freed_cpu_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds exist on glibc only")
    assert reuse_freed_cpu_memory() is True  # both mallopt calls accepted


def test_an_output_no_larger_than_the_training_size_is_rendered_on_the_training_grid(tiny_stylizer, photo, tmp_path):
    # chelsea (451x300) trains at 64x40 (multiples of 8); a 60x40 output is not that grid
    result = tiny_stylizer.stylize(photo, "fire", output_size=60)
    assert result.training_size == (40, 64) and tuple(result.tensor.shape[-2:]) == (40, 60)
    content = load_image(photo)
    with torch.no_grad():
        on_grid = resize(apply_unet(result.unet.eval(), resize(content, (40, 64))), (40, 60))
        at_output_size = apply_unet(result.unet, resize(content, (40, 60)))
    assert torch.allclose(result.tensor, on_grid, atol=1e-6)
    assert not torch.allclose(result.tensor, at_output_size, atol=1e-2), "the test must tell the two renders apart"
    again = clipstyle_opt.apply_unet_file(result.save_unet(tmp_path / "s.unet.pt"), photo, output_size=60, device="cpu")
    assert torch.allclose(again, result.tensor, atol=1e-5)


def test_render_hw_uses_the_training_grid_only_up_to_the_training_size():
    from clipstyle_opt.sizing import render_hw
    from clipstyle_opt.unet.io import training_size_of

    assert render_hw(300, 451, (40, 60), 64) == (40, 64)
    assert render_hw(300, 451, (43, 64), 64) == (40, 64)
    assert render_hw(300, 451, (300, 451), 64) == (300, 451)  # larger than the training size: as asked
    assert render_hw(300, 451, (40, 60), None) == (40, 60)  # unknown training size
    assert training_size_of({"config": {"size": 512}}) == 512
    assert training_size_of({}) is None and training_size_of({"config": {"size": "x"}}) is None


def _old_output_hw(height, width, config):
    """The engine's own output-size rule before it became `sizing.target_hw`'s (commit 96dbb94), limit aside."""
    long_side = config.output_size or min(max(height, width), config.max_output_size or max(height, width))
    if long_side == max(height, width):
        return height, width
    scale = long_side / max(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


def test_a_stylization_s_output_size_is_the_one_rule_apply_uses(monkeypatch):
    from clipstyle_opt.sizing import OutputSize, output_hw, target_hw

    for output_size in (None, 8, 63, 64, 100, 451, 1000):
        for max_output_size in (None, 8, 64, 300, 451, 2000):
            config = StyleConfig(output_size=output_size, max_output_size=max_output_size)
            for height, width in ((300, 451), (451, 300), (64, 64), (8, 1000), (1000, 9)):
                expected = _old_output_hw(height, width, config)
                assert output_hw(height, width, config) == expected, (output_size, max_output_size, height, width)
                assert target_hw(height, width, OutputSize.of(config)) == expected
    # output_size wins over max_output_size (stylize's rule; apply refuses the pair on its command line)
    assert output_hw(300, 451, StyleConfig(output_size=200, max_output_size=100)) == (133, 200)
    monkeypatch.setenv("CLIPSTYLE_MAX_PIXELS", "10000")
    assert output_hw(300, 451, StyleConfig()) == (300, 451)  # the content's own size: it was read (or given) as is
    with pytest.raises(ConfigError, match="over the limit of 10,000 px; lower --output-size, or set") as caught:
        output_hw(300, 451, StyleConfig(output_size=200))
    assert caught.value.key == "output_size"
    with pytest.raises(ConfigError, match="lower --output-size or --output-scale, or set"):
        target_hw(300, 451, OutputSize())


def test_a_coarse_phase_trains_at_its_size_first_and_the_fine_phase_continues_from_its_weights(tiny_stylizer, photo):
    seen: list[tuple[int, int, tuple[int, ...]]] = []
    outputs: list[torch.Tensor] = []
    settings = dict(size=128, crop_size=32, steps=2, coarse_size=64, coarse_lr=1e-3)

    def keep(info):
        seen.append((info.step, info.steps, tuple(info.output.shape[-2:])))
        outputs.append(info.output)

    result = tiny_stylizer.stylize(photo, "fire", coarse_steps=3, **settings, callback=keep)
    assert seen == [(1, 5, (40, 64)), (2, 5, (40, 64)), (3, 5, (40, 64)),
                    (4, 5, (88, 128)), (5, 5, (88, 128))]
    assert [row["step"] for row in result.history] == [1, 2, 3, 4, 5]
    assert [row["lr"] for row in result.history[:3]] == [1e-3] * 3, "the coarse phase runs at coarse_lr"
    assert result.history[3]["lr"] == result.config.lr and result.extra["coarse_steps"] == 3
    assert result.training_size == (88, 128)
    with torch.no_grad():  # the fine phase's first output comes from the coarse weights, not fresh ones
        fresh = seeded_unet(16, result.config.seed)(resize(load_image(photo), (88, 128)))
    assert not torch.allclose(outputs[3], fresh, atol=1e-3)


def test_the_coarse_settings_are_checked_and_the_fast_preset_uses_them():
    from clipstyle_opt.config import preset_config

    for bad in (dict(coarse_steps=-1), dict(coarse_size=32), dict(coarse_lr=0.0), dict(coarse_lr=float("nan"))):
        with pytest.raises(ConfigError):
            StyleConfig(**bad)
    fast = preset_config("fast")
    assert fast.coarse_steps > 0 and fast.coarse_size < fast.size
