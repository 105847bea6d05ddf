"""`clipstyle stylize clip.mp4 PROMPT -o out.mp4`: keyframes over shots, one U-Net, every frame, consistent statistics."""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clipstyle_opt import StyleConfig, Stylizer
from clipstyle_opt.cli import cli
from clipstyle_opt.imageio import load_image, resize
from clipstyle_opt.training import keyframes as keyframe_training
from clipstyle_opt.unet.model import seeded_unet
from clipstyle_opt.unet.norms import FrozenInstanceNorm
from clipstyle_opt.unet.shots import find_shots, frame_stats, histogram, pick_keyframes, pooled_stats
from clipstyle_opt.unet.temporal import FrameRenderer
from clipstyle_opt.video import scan, shot_statistics, stylize_video

av = pytest.importorskip("av")  # the `video` extra, part of `test`
pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parent.parent
MICRO_CLIP = ROOT / "tests" / "data" / "micro_clip.pt"
FPS, FRAMES, WIDTH, HEIGHT, RATE = 12, 24, 64, 48, 16000


def pan_frames(cut_at: int | None = None, frames: int = FRAMES) -> list[np.ndarray]:
    """A pan over coffee.png (2 px a frame); from ``cut_at`` on, a pan over astronaut.png instead (a hard cut)."""
    out = []
    for index in range(frames):
        name = "astronaut.png" if cut_at is not None and index >= cut_at else "coffee.png"
        photo = resize(load_image(ROOT / "examples" / name), (HEIGHT * 2, WIDTH * 2))
        image = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        out.append(np.ascontiguousarray(image[20:20 + HEIGHT, 2 * index:2 * index + WIDTH]))
    return out


def make_clip(path: Path, frames: list[np.ndarray], audio: bool = True) -> Path:
    """``frames`` at 12 fps in H.264 with (optionally) a 440 Hz AAC tone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "10"}
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=RATE)
            sound.layout = "mono"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            samples = int(RATE * len(frames) / FPS)
            wave = (0.3 * np.sin(2 * math.pi * 440 * np.arange(samples) / RATE)).astype(np.float32)[None]
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="fltp",
                                                   layout="mono")
                chunk.sample_rate = RATE
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def timestamps(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.pts * frame.time_base) for frame in container.decode(video=0)]


def micro_config(**changes) -> StyleConfig:
    base = dict(clip_model=str(MICRO_CLIP), size=64, steps=2, n_crops=6, crop_size=32, device="cpu", precision="fp32")
    return StyleConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def micro_stylizer(vgg16) -> Stylizer:
    return Stylizer(micro_config(), vgg=vgg16)


@pytest.fixture(scope="module")
def pan(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "pan.mp4", pan_frames())


@pytest.fixture(scope="module")
def cut(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "cut.mp4", pan_frames(cut_at=12), audio=False)


def test_the_command_keeps_frame_count_timestamps_and_audio(tmp_path, pan):
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(pan), "red stripes", "-o", str(out), "--clip-model",
                                      str(MICRO_CLIP), "--size", "64", "--steps", "2", "--n-crops", "6",
                                      "--crop-size", "32", "--device", "cpu", "--precision", "fp32",
                                      "--keyframes", "3"])
    assert result.exit_code == 0, result.output
    assert timestamps(out) == timestamps(pan) and len(timestamps(out)) == FRAMES
    with av.open(str(out)) as container, av.open(str(pan)) as source:
        assert container.streams.video[0].average_rate == source.streams.video[0].average_rate
        assert [s.codec_context.name for s in container.streams.audio] == ["aac"]
        assert container.streams.audio[0].codec_context.sample_rate == RATE
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["video"]["frames"] == FRAMES and len(sidecar["video"]["keyframes"]) == 3
    assert sidecar["prompt"] == "red stripes" and sidecar["content"] == str(pan)
    assert "train" in result.output and "render" in result.output  # the two progress bars


def test_keyframes_spread_over_the_shots():
    assert pick_keyframes([(0, 24)], 4) == [3, 9, 15, 21]
    assert pick_keyframes([(0, 12), (12, 24)], 4) == [3, 9, 15, 21]
    assert pick_keyframes([(0, 4), (4, 24)], 3) == [2, 9, 19]  # one each, the third to the longer shot
    assert pick_keyframes([(0, 2)], 5) == [0, 1]


def test_the_u_net_trains_on_several_keyframes(tmp_path, pan, micro_stylizer, monkeypatch):
    seen: list[list[torch.Tensor]] = []

    class Seen(Exception):
        """Raised once the training step has its keyframes: what is trained on is all this test reads."""

    def spy(self, unet, keyframes, *args, **kwargs):
        seen.append([content.detach().clone() for content, _ in keyframes])
        raise Seen

    monkeypatch.setattr(keyframe_training.KeyframeStep, "__init__", spy)
    with pytest.raises(Seen):
        stylize_video(pan, "red stripes", tmp_path / "out.mp4", stylizer=micro_stylizer, keyframes=3)
    (contents,) = seen
    assert len(contents) == 3
    decoded = [frame for index, frame in enumerate(_decode(pan)) if index in (4, 12, 20)]
    for content, frame in zip(contents, decoded):  # each keyframe trained on is the frame it claims to be
        expected = resize(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255, tuple(content.shape[-2:]))
        assert torch.equal(content.cpu(), expected)
    assert all((a - b).abs().mean() > 0.01 for a, b in zip(contents, contents[1:]))  # different frames


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_a_hard_cut_gives_two_shots_and_a_pan_one(pan, cut):
    assert scan(pan)[1] == [(0, FRAMES)]
    assert scan(cut)[1] == [(0, 12), (12, FRAMES)]
    assert find_shots([histogram(f) for f in pan_frames(cut_at=5, frames=8)]) == [(0, 5), (5, 8)]


def test_every_frame_uses_its_shots_statistics():
    unet = seeded_unet(4, 0)
    frames = pan_frames(cut_at=4, frames=8)
    shots = [(0, 4), (4, 8)]
    keyframes = {i: frames[i] for i in (1, 3, 6)}
    stats = shot_statistics(unet, shots, keyframes, (HEIGHT, WIDTH), 64)
    grid = lambda f: torch.from_numpy(f.astype(np.float32) / 255).permute(2, 0, 1)[None]  # noqa: E731
    expected = [pooled_stats([frame_stats(unet, grid(frames[1])), frame_stats(unet, grid(frames[3]))]),
                pooled_stats([frame_stats(unet, grid(frames[6]))])]
    for got, want in zip(stats, expected):
        for g, w in zip(got, want):
            assert torch.equal(g.mean, w.mean) and torch.equal(g.var, w.var)
    used: list[torch.Tensor] = []
    original = FrozenInstanceNorm.forward

    def record(self, x):
        used.append(self.mean.flatten().clone())
        return original(self, x)

    renderer = FrameRenderer(unet, (HEIGHT, WIDTH), 64, shots, stats)
    try:
        FrozenInstanceNorm.forward = record
        outputs = [renderer(frame) for frame in frames]
    finally:
        FrozenInstanceNorm.forward = original
    n_norms = len(stats[0])
    assert len(used) == len(frames) * n_norms
    for index in range(len(frames)):
        shot = 0 if index < 4 else 1
        for layer in range(n_norms):
            assert torch.equal(used[index * n_norms + layer], stats[shot][layer].mean.float())
    assert not torch.equal(stats[0][0].mean, stats[1][0].mean)
    # a shot whose only keyframe is this frame renders it as the per-frame path does (float rounding aside)
    alone = FrameRenderer(unet, (HEIGHT, WIDTH), 64, [(0, 1)], [expected[1]])
    per_frame = FrameRenderer(unet, (HEIGHT, WIDTH), 64, [(0, 1)], None)
    assert np.abs(alone(frames[6]).astype(int) - per_frame(frames[6]).astype(int)).max() <= 1
    assert len(outputs) == len(frames) and outputs[0].shape == (HEIGHT, WIDTH, 3)


def test_blending_runs_and_stays_within_one_shot():
    unet = seeded_unet(4, 0)
    frames = pan_frames(cut_at=3, frames=5)
    plain = FrameRenderer(unet, (HEIGHT, WIDTH), 64, [(0, 3), (3, 5)], None)
    blended = FrameRenderer(unet, (HEIGHT, WIDTH), 64, [(0, 3), (3, 5)], None, blend=0.5)
    a = [plain(f) for f in frames]
    b = [blended(f) for f in frames]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[3], b[3])  # nothing carried over a cut
    assert not np.array_equal(a[1], b[1]) and not np.array_equal(a[4], b[4])


@pytest.mark.parametrize("kind", ["garbage", "truncated", "audio only"])
def test_a_bad_video_gives_one_line_and_no_output(tmp_path, pan, kind):
    bad = tmp_path / "bad.mp4"
    if kind == "garbage":
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    elif kind == "truncated":
        bad.write_bytes(pan.read_bytes()[: pan.stat().st_size // 2])
    else:
        with av.open(str(bad), "w") as out:
            sound = out.add_stream("aac", rate=RATE)
            sound.layout = "mono"
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            chunk.sample_rate = RATE
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(cli, ["stylize", str(bad), "red stripes", "-o", str(out), "--clip-model",
                                      str(MICRO_CLIP), "--size", "64", "--steps", "2", "-q"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_video_only_options_are_refused_on_a_photo(tmp_path):
    result = CliRunner().invoke(cli, ["stylize", str(ROOT / "examples" / "coffee.png"), "fire", "-o",
                                      str(tmp_path / "o.png"), "--keyframes", "3"])
    assert result.exit_code == 2 and "--keyframes apply to a video" in result.output


def test_the_python_api_takes_a_video_path(tmp_path, pan, monkeypatch):
    import clipstyle_opt
    import clipstyle_opt.video as video

    called = {}
    monkeypatch.setattr(video, "stylize_video", lambda *a, **k: called.update(args=a, kwargs=k) or "done")
    assert clipstyle_opt.stylize(str(pan), "fire", output=tmp_path / "o.mp4", steps=3) == "done"
    assert called["args"][0] == str(pan) and called["kwargs"]["steps"] == 3
    with pytest.raises(clipstyle_opt.ConfigError, match="output="):
        clipstyle_opt.stylize(str(pan), "fire")
