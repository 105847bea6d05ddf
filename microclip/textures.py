"""Procedural texture images: one named colour drawn in one pattern, and photo-like clutter.

Every image shows one *pattern* (stripes, dots, ...) drawn in one named
*colour* (the foreground) over a desaturated random background, so the
caption "red stripes" has one right reading (`microclip.captions` writes the
captions, `microclip.batches` pairs them with images). Photo-like clutter
(smooth colour fields and blobs, `render_clutter`) can be blended under a
texture, and pure clutter stands for the caption "a photo" (the source text
that the stylization loss encodes).

Everything is deterministic given a ``numpy.random.Generator`` and is
vectorized over the pixel grid with numpy, so one image of 96 px costs well
under a millisecond.

Units: images are float32 RGB in [0, 1]; sizes are in pixels; colours in
`COLOURS` are 8-bit RGB triples (0..255).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Named foreground colours, 8-bit RGB (0..255). Each render adds a small random jitter.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30),
    "green": (30, 165, 50),
    "blue": (35, 65, 215),
    "yellow": (240, 215, 35),
    "purple": (135, 40, 175),
    "orange": (245, 135, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}

#: Pattern names; each is also the word the captions use.
PATTERNS: tuple[str, ...] = (
    "stripes", "dots", "checkerboard", "waves", "rings", "grid", "noise", "gradient",
)

_COLOUR_JITTER = 22  # +- 8-bit units, drawn per channel and once more as a shared brightness shift
_NEUTRAL_JITTER = 12  # the same for white and black
_MIN_BG_DISTANCE = 0.4  # minimum Euclidean RGB distance (in [0, 1] units) of background from foreground


@lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1): (x, y), each (size, size) float32."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return x, y


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed (384, 384, 3) standard-normal float32 tile; random windows of it serve as pixel noise."""
    return np.random.default_rng(12345).standard_normal((384, 384, 3), dtype=np.float32)


def _pixel_noise(size: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 Gaussian-like noise of std ``sigma`` (a random window of a fixed tile)."""
    bank = _noise_bank()
    if size > bank.shape[0]:
        return rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(sigma)
    top, left = rng.integers(0, bank.shape[0] - size + 1, size=2)
    return bank[top:top + size, left:left + size] * np.float32(sigma * rng.choice([-1.0, 1.0]))


def _soft(signed_distance_px: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a signed distance in pixels (> 0 inside)."""
    return np.clip(0.5 + signed_distance_px, 0.0, 1.0)


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates rotated by ``angle`` radians about the image centre."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    xc, yc = x - 0.5, y - 0.5
    return xc * c - yc * s + 0.5, xc * s + yc * c + 0.5


def _upsample(field: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of an (m, m[, C]) field to (size, size[, C])."""
    m = field.shape[0]
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * m - 0.5
    lo = np.clip(np.floor(pos).astype(np.int64), 0, m - 1)
    hi = np.clip(lo + 1, 0, m - 1)
    w = np.clip(pos - lo, 0.0, 1.0).astype(np.float32)
    w_rows = w.reshape((size, 1) + (1,) * (field.ndim - 2))
    rows = field[lo] * (1 - w_rows) + field[hi] * w_rows
    w_cols = w.reshape((1, size) + (1,) * (field.ndim - 2))
    return rows[:, lo] * (1 - w_cols) + rows[:, hi] * w_cols


def _jittered_colour(colour: str, rng: np.random.Generator) -> np.ndarray:
    base = np.asarray(COLOURS[colour], dtype=np.float32)
    jitter = _NEUTRAL_JITTER if colour in ("white", "black") else _COLOUR_JITTER
    rgb = base + rng.integers(-jitter, jitter + 1, size=3) + rng.integers(-jitter, jitter + 1)
    return np.clip(rgb, 0, 255).astype(np.float32) / 255.0


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def _background(foreground: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A desaturated random colour at least `_MIN_BG_DISTANCE` from ``foreground``."""
    for _ in range(64):
        bg = _hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.9))
        if np.linalg.norm(bg - foreground) >= _MIN_BG_DISTANCE:
            return bg
    # Fall back to the grey farthest from the foreground.
    return np.full(3, 0.2 if foreground.mean() > 0.5 else 0.8, dtype=np.float32)


def _mask(pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Foreground coverage in [0, 1], (size, size) float32, for one random instance of ``pattern``."""
    x, y = _grid(size)
    cycles = rng.uniform(2.5, 7.0)  # repeats across the image
    period_px = size / cycles
    if pattern == "stripes":
        angle = rng.choice([0.0, 0.5, 0.25, 0.75]) * np.pi + rng.normal(0.0, 0.06)
        u, _ = _rotate(x, y, angle)
        t = np.abs((u * cycles + rng.random()) % 1.0 - 0.5)
        duty = rng.uniform(0.35, 0.55)
        return _soft((duty / 2 - t) * period_px)
    if pattern == "dots":
        xr, yr = _rotate(x, y, rng.uniform(-0.35, 0.35))
        gu, gv = xr * cycles + rng.random(), yr * cycles + rng.random()
        if rng.random() < 0.5:  # hexagonal packing
            gu = gu + 0.5 * (np.floor(gv) % 2)
        fu, fv = gu % 1.0 - 0.5, gv % 1.0 - 0.5
        radius = rng.uniform(0.2, 0.38)
        return _soft((radius - np.sqrt(fu * fu + fv * fv)) * period_px)
    if pattern == "checkerboard":
        xr, yr = _rotate(x, y, rng.uniform(-0.3, 0.3))
        gu, gv = xr * cycles + rng.random(), yr * cycles + rng.random()
        fu, fv = gu % 1.0, gv % 1.0
        edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) * period_px
        parity = (np.floor(gu) + np.floor(gv)) % 2
        return _soft(np.where(parity == 0, edge, -edge))
    if pattern == "waves":
        angle = rng.choice([0.0, 0.5]) * np.pi + rng.normal(0.0, 0.1)
        u, v = _rotate(x, y, angle)
        amplitude = rng.uniform(0.25, 0.6) / cycles
        wave_cycles = rng.uniform(1.0, 3.5)
        u = u + amplitude * np.sin(2 * np.pi * (v * wave_cycles + rng.random()))
        t = np.abs((u * cycles + rng.random()) % 1.0 - 0.5)
        duty = rng.uniform(0.35, 0.55)
        return _soft((duty / 2 - t) * period_px)
    if pattern == "rings":
        cx, cy = rng.uniform(-0.1, 1.1, size=2).astype(np.float32)
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        t = np.abs((r * cycles + rng.random()) % 1.0 - 0.5)
        duty = rng.uniform(0.35, 0.55)
        return _soft((duty / 2 - t) * period_px)
    if pattern == "grid":
        xr, yr = _rotate(x, y, rng.uniform(-0.3, 0.3))
        width = rng.uniform(0.12, 0.25)
        tu = np.abs((xr * cycles + rng.random()) % 1.0 - 0.5)
        tv = np.abs((yr * cycles + rng.random()) % 1.0 - 0.5)
        return _soft((width / 2 - np.minimum(0.5 - tu, 0.5 - tv)) * period_px)
    if pattern == "noise":
        cells = int(rng.integers(8, 22))
        field = _upsample(rng.random((cells, cells)).astype(np.float32), size)
        threshold = rng.uniform(0.42, 0.55)
        return np.clip((field - threshold) * 8.0 + 0.5, 0.0, 1.0)
    if pattern == "gradient":
        if rng.random() < 0.7:
            u, _ = _rotate(x, y, rng.uniform(0, 2 * np.pi))
            t = (u - 0.5) * rng.uniform(0.8, 1.4) + 0.5
        else:
            cx, cy = rng.uniform(0.2, 0.8, size=2).astype(np.float32)
            t = 1.0 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2) * rng.uniform(1.0, 1.6)
        return np.clip(t, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")


def render_texture(colour: str, pattern: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random instance of ``pattern`` drawn in ``colour`` over a random background.

    colour: a key of `COLOURS` (the foreground); pattern: one of `PATTERNS`;
    size: side in pixels (>= 8). Scale (2.5..7 repeats per side), phase,
    orientation, background and a mild shading/noise are random from ``rng``.
    Returns (size, size, 3) float32 RGB in [0, 1].
    """
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose from {', '.join(COLOURS)}")
    fg = _jittered_colour(colour, rng)
    bg = _background(fg, rng)
    mask = _mask(pattern, size, rng)[..., None]
    image = bg + (fg - bg) * mask
    # Mild illumination gradient and sensor noise, so flat colours are not exact.
    x, y = _grid(size)
    shade = 1.0 + rng.uniform(-0.08, 0.08) * (x - 0.5) + rng.uniform(-0.08, 0.08) * (y - 0.5)
    image = image * shade[..., None].astype(np.float32)
    image += _pixel_noise(size, 0.015, rng)
    return np.clip(image, 0.0, 1.0, out=image)


def render_clutter(size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo-like clutter image: smooth colour fields, a few soft blobs and boxes, noise.

    Returns (size, size, 3) float32 RGB in [0, 1].
    """
    x, y = _grid(size)
    coarse = int(rng.integers(2, 6))
    image = _upsample(rng.random((coarse, coarse, 3)).astype(np.float32), size)
    fine = int(rng.integers(6, 16))
    image = image + 0.15 * (_upsample(rng.random((fine, fine, 3)).astype(np.float32), size) - 0.5)
    for _ in range(int(rng.integers(1, 5))):
        colour = rng.random(3).astype(np.float32)
        cx, cy = (float(v) for v in rng.random(2))
        if rng.random() < 0.5:  # ellipse
            rx, ry = (float(v) for v in rng.uniform(0.05, 0.35, size=2))
            d = 1.0 - np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
            cover = _soft(d * min(rx, ry) * size)
        else:  # box
            hx, hy = (float(v) for v in rng.uniform(0.05, 0.3, size=2))
            d = np.minimum(hx - np.abs(x - cx), hy - np.abs(y - cy))
            cover = _soft(d * size)
        image = image + (colour - image) * (cover[..., None] * np.float32(rng.uniform(0.6, 1.0)))
    grey = image.mean(axis=-1, keepdims=True)
    image = grey + (image - grey) * np.float32(rng.uniform(0.3, 0.9))  # photos are rarely saturated
    contrast = rng.uniform(0.6, 1.1)
    image = (image - 0.5) * np.float32(contrast) + np.float32(0.5 + rng.uniform(-0.15, 0.15))
    image += _pixel_noise(size, 0.02, rng)
    return np.clip(image, 0.0, 1.0, out=image).astype(np.float32, copy=False)
