"""Issue 13, files and pixel formats: every bad file ends in one clear line, nothing is written or run code.

Each CLI case checks the exit code, the message, and that the directory
holds exactly what it held before (nothing partial, nothing overwritten).
"""
from __future__ import annotations

import io
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from clipstyle_opt.unet.io import UNET_FORMAT, load_unet
from clipstyle_opt.errors import ClipstyleWarning, ImageReadError
from clipstyle_opt.imageio import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, MIN_SIDE, load_image, read_image

from faults_helpers import TINY, error_line, listing, no_model_load, png_bytes, run, saved_unet  # noqa: F401


@pytest.fixture
def folder(tmp_path, photo):
    """A working folder with a good photo in it."""
    (tmp_path / "photo.png").write_bytes(photo.read_bytes())
    return tmp_path


def stylize_fails(folder, content, *extra, env=None, monkeypatch=None):
    """Run `stylize` on ``content``; return (exit code, error line), after checking nothing changed on disk."""
    before = listing(folder)
    result = run("stylize", content, "fire", "-o", folder / "out.png", *TINY, *extra)
    assert listing(folder) == before
    return result.exit_code, error_line(result.output)


# --- 1. files ------------------------------------------------------------------------------------------

def test_missing_photo(folder, no_model_load):
    code, line = stylize_fails(folder, folder / "nope.jpg")
    assert code == 1 and line == f"error: photo not found: {folder / 'nope.jpg'}"


def test_a_directory_as_the_photo_is_a_usage_error(folder, no_model_load):
    before = listing(folder)
    result = run("stylize", folder, "fire", "-o", folder / "out.png", *TINY)
    assert result.exit_code == 2 and "is a directory" in result.output.splitlines()[-1]
    assert listing(folder) == before


def test_zero_byte_photo(folder, no_model_load):
    (folder / "empty.jpg").write_bytes(b"")
    code, line = stylize_fails(folder, folder / "empty.jpg")
    assert code == 1 and "photo is an empty file (0 bytes)" in line


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(folder, fmt, no_model_load):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, fmt)
    path = folder / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    code, line = stylize_fails(folder, path)
    assert code == 1 and f"photo is truncated or corrupt: {path}" in line


def test_a_non_image_with_an_image_extension(folder, no_model_load):
    (folder / "notes.png").write_text("shopping list: milk, eggs\n")
    code, line = stylize_fails(folder, folder / "notes.png")
    assert code == 1 and f"not an image (or a format Pillow cannot read): {folder / 'notes.png'}" in line


def test_an_image_with_the_wrong_extension_is_read_by_its_contents(folder, tmp_path):
    misnamed = folder / "really_a_png.jpg"
    misnamed.write_bytes((folder / "photo.png").read_bytes())
    assert torch.equal(load_image(misnamed), load_image(folder / "photo.png"))
    unet = saved_unet(tmp_path / "style.unet.pt")
    result = run("apply", unet, misnamed, "-o", folder / "applied.png", "--output-size", "32")
    assert result.exit_code == 0, result.output
    assert Image.open(folder / "applied.png").format == "PNG"


def test_decompression_bomb_says_the_limit_and_how_to_raise_it(folder, no_model_load):
    bomb = folder / "bomb.png"
    bomb.write_bytes(png_bytes(30000, 30000, rows=b""))  # a 900-megapixel header, almost no data
    code, line = stylize_fails(folder, bomb)
    assert code == 1
    assert f"30000x30000 = 900,000,000 px, over the limit of {DEFAULT_MAX_PIXELS:,} px" in line
    assert f"set {MAX_PIXELS_ENV}=900000000" in line


def test_the_pixel_limit_is_an_environment_variable(folder, monkeypatch, no_model_load):
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    code, line = stylize_fails(folder, folder / "photo.png")
    assert code == 1 and "over the limit of 1,000 px" in line
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    code, line = stylize_fails(folder, folder / "photo.png")
    assert code == 2 and f"{MAX_PIXELS_ENV} must be a whole number of pixels >= 1, got 'lots'" in line
    Image.new("RGB", (40, 25)).save(folder / "small.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "999")
    with pytest.raises(ImageReadError, match="over the limit of 999 px"):
        read_image(folder / "small.png")
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    assert read_image(folder / "small.png").size == (40, 25)


def test_pillows_own_bomb_check_does_not_override_ours(folder, monkeypatch):
    # Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS by itself; our limit is the one that counts.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", (40, 25)).save(folder / "small.png")
    assert read_image(folder / "small.png").size == (40, 25)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_too_small_photo_says_the_minimum(folder, no_model_load):
    Image.new("RGB", (MIN_SIDE - 1, 40)).save(folder / "tiny.png")
    code, line = stylize_fails(folder, folder / "tiny.png")
    assert code == 1 and f"photo is too small: {MIN_SIDE - 1}x40 px; each side must be at least {MIN_SIDE} px" in line


def test_too_elongated_photo_says_the_minimum(folder, no_model_load):
    Image.new("RGB", (2000, 20)).save(folder / "strip.png")
    code, line = stylize_fails(folder, folder / "strip.png")
    assert code == 1 and "too elongated for training at size 64" in line and f"at least {MIN_SIDE} px" in line


def test_too_small_style_image(folder, no_model_load):
    Image.new("RGB", (8, 8)).save(folder / "style.png")
    code, line = stylize_fails(folder, folder / "photo.png", "--style-image", folder / "style.png")
    assert code == 1 and "style image is too small: 8x8 px" in line


class _RunsCode:
    """Unpickling this would call open(marker, "w"), creating the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _unet_cases(folder):
    good = saved_unet(folder / "good.unet.pt")
    payload = torch.load(good, weights_only=True)
    cases = {}
    cases["empty"] = (b"", "U-Net file is empty (0 bytes)")
    cases["random"] = (np.random.default_rng(1).bytes(3000), "not a clipstyle U-Net file, or a damaged one")
    cases["truncated"] = (good.read_bytes()[:5000], "not a clipstyle U-Net file, or a damaged one")
    buffer = io.BytesIO()
    torch.save({**payload, "format": "clipstyle_opt.unet.model/2"}, buffer)
    cases["newer"] = (buffer.getvalue(), "a U-Net of another clipstyle_opt version (format 'clipstyle_opt.unet.model/2')")
    buffer = io.BytesIO()
    torch.save({**payload, "width": 8}, buffer)
    cases["mismatched"] = (buffer.getvalue(), "does not fit this version's network")
    buffer = io.BytesIO()
    torch.save({"some": torch.zeros(2)}, buffer)
    cases["foreign"] = (buffer.getvalue(), "not a clipstyle U-Net file")
    good.unlink()
    return cases


@pytest.mark.parametrize("case", ["empty", "random", "truncated", "newer", "mismatched", "foreign"])
def test_bad_unet_files(folder, case):
    data, message = _unet_cases(folder)[case]
    (folder / "bad.unet.pt").write_bytes(data)
    before = listing(folder)
    result = run("apply", folder / "bad.unet.pt", folder / "photo.png", "-o", folder / "out.png")
    assert result.exit_code == 1 and message in error_line(result.output)
    assert listing(folder) == before


@pytest.mark.parametrize("how", ["torch.save", "plain pickle"])
def test_loading_a_unet_never_runs_code_from_the_file(folder, how):
    marker = folder / "code_ran"
    evil = {"format": UNET_FORMAT, "width": 4, "state_dict": _RunsCode(marker), "metadata": {}}
    path = folder / "evil.unet.pt"
    if how == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil))
    assert not marker.exists()
    before = listing(folder)
    with pytest.raises(ImageReadError, match="not a clipstyle U-Net file, or a damaged one"):
        load_unet(path)
    result = run("apply", path, folder / "photo.png", "-o", folder / "out.png")
    assert result.exit_code == 1 and "not a clipstyle U-Net file, or a damaged one" in error_line(result.output)
    assert not marker.exists()  # the pickle's code did not run
    assert listing(folder) == before


# --- 2. pixel formats ----------------------------------------------------------------------------------

def _saved(image: Image.Image, path, **params):
    image.save(path, **params)
    return path


def test_greyscale_and_palette_become_rgb(tmp_path):
    grey = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    tensor = load_image(_saved(grey, tmp_path / "grey.png"))
    assert tensor.shape == (1, 3, 16, 16)
    assert torch.equal(tensor[0, 0], tensor[0, 1]) and torch.equal(tensor[0, 0], tensor[0, 2])
    assert tensor[0, 0, 15, 15] == 1.0 and tensor[0, 0, 0, 0] == 0.0
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    palette = rgb.quantize(8)
    expected = torch.from_numpy(np.asarray(palette.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    assert torch.equal(load_image(_saved(palette, tmp_path / "palette.png"))[0], expected)


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # full magenta + yellow: red
    for name in ("cmyk.jpg", "cmyk.tif"):
        tensor = load_image(_saved(cmyk, tmp_path / name))
        red, green, blue = tensor[0, :, 8, 8].tolist()
        assert red > 0.9 and green < 0.1 and blue < 0.1, name


def test_16_bit_png_keeps_its_range(tmp_path):
    grey16 = Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16))
    tensor = load_image(_saved(grey16, tmp_path / "grey16.png"))
    assert tensor.shape == (1, 3, 16, 16)
    assert torch.allclose(tensor, torch.full_like(tensor, 32768 / 65535))  # not clipped to white as 8-bit would be
    rows = np.tile(np.array([65535, 0, 32768], dtype=">u2"), 16 * 16).tobytes()
    (tmp_path / "rgb16.png").write_bytes(png_bytes(16, 16, bit_depth=16, colour_type=2, rows=rows))
    red, green, blue = load_image(tmp_path / "rgb16.png")[0, :, 3, 3].tolist()
    assert red == 1.0 and green == 0.0 and abs(blue - 0.5) < 0.01


def test_alpha_is_composited_onto_white_and_outputs_are_opaque(tmp_path, photo):
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 16, 32))
    rgba.paste((255, 0, 0, 128), (16, 0, 32, 16))
    tensor = load_image(_saved(rgba, tmp_path / "cut_out.png"))
    assert tensor[0, :, 20, 20].tolist() == [1.0, 1.0, 1.0]  # transparent -> white
    assert tensor[0, :, 5, 5].tolist() == [1.0, 0.0, 0.0]  # opaque kept
    assert abs(tensor[0, 1, 5, 20].item() - 127 / 255) < 0.01  # half transparent -> half way to white
    la = Image.new("LA", (16, 16), (0, 0))
    assert load_image(_saved(la, tmp_path / "la.png")).min() == 1.0
    unet = saved_unet(tmp_path / "style.unet.pt")
    result = run("apply", unet, tmp_path / "cut_out.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").mode == "RGB"


def _exif_rotated_jpeg(path):
    """Stored 48 wide x 32 high, red left half; EXIF orientation 6 says: show it turned 90 degrees clockwise."""
    image = Image.new("RGB", (48, 32), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 24, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, "JPEG", exif=exif.tobytes(), quality=95)
    return path


def test_exif_rotation_is_applied_and_the_output_is_upright(tmp_path):
    path = _exif_rotated_jpeg(tmp_path / "portrait.jpg")
    tensor = load_image(path)
    assert tensor.shape == (1, 3, 48, 32)  # shown as a portrait
    assert tensor[0, 0, 2, 16] > 0.9 and tensor[0, 2, 45, 16] > 0.9  # red on top, blue below
    unet = saved_unet(tmp_path / "style.unet.pt")
    result = run("apply", unet, path, "-o", tmp_path / "out.jpg")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (32, 48)
        assert out.getexif().get(0x0112) in (None, 1)  # no rotation left for viewers to apply twice


def _swapped_primaries_profile() -> bytes:
    """sRGB's ICC profile with the red and green primaries swapped: red pixels mean green."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", data[128:132])[0]
    where = {bytes(data[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = where[b"rXYZ"], where[b"gXYZ"]
    data[red + 4:red + 12], data[green + 4:green + 12] = data[green + 4:green + 12], data[red + 4:red + 12]
    return bytes(data)


def test_icc_profiles_are_converted_to_srgb(tmp_path):
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    plain = load_image(_saved(image, tmp_path / "plain.png"))
    tagged = load_image(_saved(image, tmp_path / "tagged.png", icc_profile=_swapped_primaries_profile()))
    assert plain[0, :, 8, 8].argmax() == 0  # red without a profile
    assert tagged[0, :, 8, 8].argmax() == 1  # its profile says these values are green
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert torch.allclose(load_image(_saved(image, tmp_path / "srgb.png", icc_profile=srgb)), plain, atol=2 / 255)


def test_a_broken_icc_profile_is_ignored_with_a_warning(tmp_path):
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    path = _saved(image, tmp_path / "broken.png", icc_profile=b"not a profile")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensor = load_image(path)
    assert [str(w.message) for w in caught if w.category is ClipstyleWarning] == \
        ["ICC profile not applied (cannot open profile from string); the image is read as sRGB"]
    assert tensor[0, :, 8, 8].argmax() == 0
    unet = saved_unet(tmp_path / "style.unet.pt")
    result = run("apply", unet, path, "-o", tmp_path / "out.png")
    assert result.exit_code == 0
    assert "warning: ICC profile not applied" in result.output
