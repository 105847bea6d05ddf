"""Issue 13, fuzzing: random bytes, random small images in every PIL mode and random settings
through the loaders and `StyleConfig` meet only clean errors or valid results.

"Clean" means the error types a user sees as one line (`ImageReadError`,
`ConfigError`); anything else (a crash, a NaN pixel, a hang) fails. Examples
are derandomized (the same ones on every machine) and bounded in number and
size; a SIGALRM guard turns a hang into a failure.
"""
from __future__ import annotations

import contextlib
import io
import math
import signal
import tempfile
import warnings
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipstyle_opt import StyleConfig
from clipstyle_opt.unet.io import load_unet
from clipstyle_opt.errors import ConfigError, ImageReadError
from clipstyle_opt.imageio import load_image

FUZZ = settings(max_examples=60, deadline=timedelta(seconds=10), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "RGBX", "RGBa", "La",
         "I;16", "I;16L", "I;16B"]
FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp",
           "PPM": ".ppm", "ICO": ".ico"}


@contextlib.contextmanager
def no_hang(seconds: int):
    """Fail instead of hanging: SIGALRM raises after ``seconds``."""
    def alarm(signum, frame):
        raise TimeoutError(f"no result within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check_image(tensor: torch.Tensor, size: tuple[int, int] | None = None) -> None:
    assert tensor.dtype == torch.float32 and tensor.ndim == 4 and tensor.shape[:2] == (1, 3)
    assert bool(torch.isfinite(tensor).all()) and tensor.min() >= 0 and tensor.max() <= 1
    if size is not None:
        assert tuple(tensor.shape[-2:]) == size


def load_or_clean_error(source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a ClipstyleWarning (an ICC profile that does not apply) is fine
        try:
            return load_image(source)
        except ImageReadError as exc:
            assert "\n" not in str(exc)
            return None


def _seed_files() -> list[bytes]:
    """Small valid files of each format: mutations of these reach the decoders, not just the sniffing."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8))
    out = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        out.append(buffer.getvalue())
    return out


SEEDS = _seed_files()
mutated_files = st.builds(
    lambda seed, cut, flips: _mutate(SEEDS[seed], cut, flips),
    st.integers(0, len(SEEDS) - 1), st.floats(0.05, 1.0),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6))


def _mutate(data: bytes, cut: float, flips: list[tuple[float, int]]) -> bytes:
    data = bytearray(data[: max(1, int(len(data) * cut))])
    for where, value in flips:
        data[int(where * len(data))] = value
    return bytes(data)


@settings(FUZZ, max_examples=250)
@given(data=st.one_of(st.binary(max_size=512), mutated_files), suffix=st.sampled_from(list(FORMATS.values())))
# Found by this test before read_image caught every decoder error (SyntaxError, ValueError, ...):
@example(data=b"P1\t1\t1", suffix=".png")
@example(data=b"P2\t0\t0 0", suffix=".png")
@example(data=b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00IHDR", suffix=".png")
@example(data=SEEDS[0][:60], suffix=".png")
def test_random_and_damaged_files_give_an_image_or_a_clean_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp, no_hang(60):
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        tensor = load_or_clean_error(path)
        if tensor is not None:
            check_image(tensor)
        assert sorted(p.name for p in Path(tmp).iterdir()) == [path.name]  # reading writes nothing


@settings(FUZZ, max_examples=120)
@given(mode=st.sampled_from(MODES), width=st.integers(1, 12), height=st.integers(1, 12),
       pixels=st.binary(max_size=12 * 12 * 4), fmt=st.sampled_from(list(FORMATS)))
@example(mode="F", width=2, height=1, pixels=b"\xff\xff\xff\xff\x00\x00\x80\x7f", fmt="TIFF")  # NaN, +inf
@example(mode="I", width=2, height=1, pixels=b"\xff\xff\xff\xff\x00\x00\x01\x00", fmt="PNG")  # -1, 65536
def test_small_images_in_every_mode_load_as_rgb(mode, width, height, pixels, fmt):
    needed = len(Image.new(mode, (width, height)).tobytes())
    image = Image.frombytes(mode, (width, height), (pixels * (needed // max(len(pixels), 1) + 1))[:needed]
                            if pixels else bytes(needed))
    if mode in ("P", "PA"):
        image.putpalette(list(range(256)) * 3)
    with no_hang(60):
        check_image(load_image(image), (height, width))  # a PIL image in memory: always converts
        buffer = io.BytesIO()
        try:
            image.save(buffer, fmt)
        except (OSError, ValueError, KeyError, TypeError):
            return  # Pillow cannot write this mode in this format
        # Some Pillow releases write files they cannot read back themselves (12.3: a YCbCr TIFF, "image file
        # is truncated"): those need only end in a clean error here, which load_or_clean_error checks.
        try:
            with Image.open(io.BytesIO(buffer.getvalue())) as reread:
                reread.load()
            pillow_reads_it = True
        except (OSError, ValueError, KeyError, TypeError):
            pillow_reads_it = False
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"image{FORMATS[fmt]}"
            path.write_bytes(buffer.getvalue())
            tensor = load_or_clean_error(path)
            if pillow_reads_it:
                assert tensor is not None, (mode, fmt)  # what Pillow wrote and reads, we read
            if tensor is not None:
                check_image(tensor)


FIELD_NAMES = [f.name for f in fields(StyleConfig)]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["conv4_2", "relu5_4", "cpu", "cuda", "bf16", "vgg19", "conv4_2,conv5_2"]),
    st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                         st.integers(), max_size=2))


@FUZZ
@given(values=st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=6)), VALUES, max_size=4))
def test_random_settings_give_a_valid_config_or_a_clean_error(values):
    try:
        config = StyleConfig.from_dict(values)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    # A config that validates is usable: it round-trips and its numbers are in range.
    assert StyleConfig.from_json(config.to_json()) == config
    assert StyleConfig.from_yaml(config.to_yaml()) == config
    assert config.steps >= 1 and 64 <= config.size <= 4096 and config.crop_size >= 8
    assert all(math.isfinite(getattr(config, name)) and getattr(config, name) >= 0
               for name in ("lr", "lambda_dir", "lambda_patch", "lambda_c", "lambda_tv", "lambda_style"))


@FUZZ
@given(text=st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1"))),
       yaml_format=st.booleans())
def test_random_config_files_give_a_config_or_a_clean_error(text, yaml_format):
    try:
        config = StyleConfig.from_yaml(text) if yaml_format else StyleConfig.from_json(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(config, StyleConfig)


@settings(FUZZ, max_examples=30)
@given(data=st.one_of(st.binary(max_size=512), st.binary(min_size=1, max_size=64).map(lambda b: b"PK\x03\x04" + b)))
def test_random_unet_files_give_a_clean_error(data):
    with tempfile.TemporaryDirectory() as tmp, no_hang(60):
        path = Path(tmp) / "x.unet.pt"
        path.write_bytes(data)
        with pytest.raises(ImageReadError):
            load_unet(path)
