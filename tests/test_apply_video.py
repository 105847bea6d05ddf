"""`clipstyle apply` on a video and on a folder of photos."""
import builtins
import math
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clipstyle_opt.unet import io as unet_io
from clipstyle_opt.unet.io import save_unet
from clipstyle_opt.unet.model import seeded_unet
from clipstyle_opt.cli import cli

av = pytest.importorskip("av")  # the `video` extra, part of `test`

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FPS, FRAMES, WIDTH, HEIGHT, RATE = 12, 8, 64, 48, 16000


def make_clip(path: Path) -> None:
    """8 frames of 64 x 48 at 12 fps (a bar moving right) with a 440 Hz sine in AAC."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for index in range(FRAMES):
            image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
            image[10:30, 4 + 4 * index:24 + 4 * index] = (230, 40, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(RATE * FRAMES / FPS)
        wave = (0.3 * np.sin(2 * math.pi * 440 * np.arange(samples) / RATE)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate = RATE
            out.mux(audio.encode(chunk))
        out.mux(audio.encode(None))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def unet(tmp_path):
    return save_unet(seeded_unet(4, 0), tmp_path / "style.unet.pt", {"prompt": "fire"})


def test_a_video_round_trips_with_its_frames_rate_and_audio(tmp_path, unet):
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    make_clip(clip)
    result = run("apply", unet, clip, "-o", out)
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.average_rate == FPS
        assert (video.codec_context.width, video.codec_context.height) == (WIDTH, HEIGHT)
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.sample_rate == RATE
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == FRAMES
    with av.open(str(clip)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(frames[0].astype(int) - first).mean() > 5  # restyled, not copied
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_video_output_must_be_a_video_container(tmp_path, unet):
    clip = tmp_path / "clip.mp4"
    make_clip(clip)
    result = run("apply", unet, clip, "-o", tmp_path / "out.avi")
    assert result.exit_code == 2
    assert "a video's output must end in one of .mp4" in result.output


def test_without_pyav_a_video_fails_in_one_line(tmp_path, unet, monkeypatch):
    clip = tmp_path / "clip.mp4"
    make_clip(clip)
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av":
            raise ImportError("no av")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    result = run("apply", unet, clip, "-o", tmp_path / "out.mp4")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "error: video needs PyAV, which is not installed: pip install 'clipstyle_opt[video]'")
    assert not (tmp_path / "out.mp4").exists()


def test_a_folder_is_restyled_with_one_load_of_the_unet(tmp_path, unet, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLES / "chelsea.png", photos / "cat.png")
    shutil.copy(EXAMPLES / "coffee.png", photos / "cup.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("ignored")
    loads = []
    real_unet = unet_io.StyleUNet  # built once per file load_unet reads, whoever imports load_unet
    monkeypatch.setattr(unet_io, "StyleUNet", lambda width: loads.append(width) or real_unet(width))
    result = run("apply", unet, photos, "-o", tmp_path / "styled", "--output-scale", "0.25")
    assert len(loads) == 1
    assert result.exit_code == 1  # one photo could not be read; the others are written
    assert "skipped: not an image" in result.output
    assert "1 of 3 photos could not be read" in result.output
    from PIL import Image

    assert sorted(p.name for p in (tmp_path / "styled").glob("*.png")) == ["cat.png", "cup.png"]
    with Image.open(tmp_path / "styled" / "cat.png") as image:
        assert image.size == (113, 75)  # a quarter of 451 x 300


def test_flicker_is_the_mean_frame_to_frame_change():
    from clipstyle_opt.unet.video import flicker

    still = [np.full((4, 4, 3), 7, np.uint8)] * 3
    assert flicker(iter(still)) == 0.0
    steps = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10, 30)]
    assert flicker(iter(steps)) == 15.0
