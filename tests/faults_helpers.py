"""Shared helpers for the bad-input and fault tests (issue 13): CLI runs, listings, crafted files."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipstyle_opt import engine
from clipstyle_opt.unet.io import save_unet
from clipstyle_opt.unet.model import seeded_unet
from clipstyle_opt.evaluate import evaluator
from clipstyle_opt.cli import cli

# Tiny settings: 64 px training, 4 crops of 32 px, fp32 on the CPU.
TINY = ["--size", "64", "--n-crops", "4", "--crop-size", "32", "--max-output-size", "64", "--device", "cpu",
        "--precision", "fp32", "-q"]


def run(*args: object):
    """Invoke the CLI in-process; exceptions are caught by the CLI itself (none may escape)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def listing(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> contents), hidden temp files included."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def error_line(output: str) -> str:
    """The one ``error:`` line of a failed command (asserts there is exactly one, and no traceback)."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


def png_bytes(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG file written by hand: any header (even a huge one) with the given raw rows (filter 0 added)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    if rows is None:
        rows = bytes(width * channels * bit_depth // 8 * height)
    stride = width * channels * bit_depth // 8
    raw = b"".join(b"\0" + rows[i * stride:(i + 1) * stride] for i in range(len(rows) // stride)) if stride else b""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.fixture
def no_model_load(monkeypatch):
    """Make loading CLIP or VGG fail loudly: a command's checks must all come before any model loads."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(engine, "load_encoder", refuse)
    monkeypatch.setattr(engine, "load_vgg", refuse)
    monkeypatch.setattr(evaluator, "load_encoder", refuse)


@pytest.fixture
def fast_models(monkeypatch, tiny_clip, vgg16):
    """The CLI gets the session's tiny CLIP and VGG16 instead of loading them (saves seconds per run)."""
    monkeypatch.setattr(engine, "load_encoder", lambda spec, device="cpu": tiny_clip)
    monkeypatch.setattr(engine, "load_vgg", lambda arch, layers, device="cpu": vgg16)


def saved_unet(path: Path) -> Path:
    """A freshly initialised U-Net saved as `stylize --save-unet` would (for cheap `apply` runs)."""
    return save_unet(seeded_unet(4, 0), path, {"prompt": "fire"})
