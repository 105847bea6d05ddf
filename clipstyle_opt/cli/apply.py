"""``clipstyle apply``: a saved U-Net on one photo, a folder of photos, or a video (checks, progress, writing)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import click

from ..config import DEVICES
from ..devices import is_out_of_memory, resolve_device
from ..errors import ClipstyleError, ConfigError, ImageReadError, OutOfMemoryError
from ..imageio import check_min_size, check_output_file, check_writable, pil_to_rgb8
from ..sizing import OutputSize, target_hw
from ..unet.io import training_size_of
from ..unet.restyle import Restyler, photos_in
from ..unet.tiling import DEFAULT_TILE_SIZE, STATS_MODES
from .common import handle_errors


def _bar(quiet: bool, total: Optional[int], unit: str, desc: str) -> Any:
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True, file=sys.stderr)


def _tile_progress(bar: Any) -> Optional[Callable[[int, int], None]]:
    if bar is None:
        return None

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
    return update


def _out_of_memory(what: str, tile_size: int) -> OutOfMemoryError:
    return OutOfMemoryError(f"out of memory applying the U-Net to {what}: lower --tile-size (now {tile_size}), "
                            "or --output-size / --output-scale")


def _folder_targets(photos: list[Path], folder: Path) -> list[Path]:
    """<stem>.png per photo; photos whose stems collide (a.jpg, a.png) keep their suffix (a.jpg.png)."""
    stems = [p.stem for p in photos]
    return [folder / (f"{p.stem}.png" if stems.count(p.stem) == 1 else f"{p.name}.png") for p in photos]


def run_apply(unet: str, content: str, output: str, *, output_size: Optional[int], output_scale: Optional[float],
              max_output_size: Optional[int], tile_size: int, norm_stats: str, device: str, overwrite: bool,
              quiet: bool) -> None:
    """Check everything, load the U-Net once, restyle, write atomically (see `apply_command`)."""
    from ..unet.io import load_unet
    from ..imageio import read_image, save_image
    from ..unet.video import OUTPUT_SUFFIXES, import_av, is_video, probe, stylize_video

    size = OutputSize(output_size, output_scale, max_output_size)
    if tile_size % 8 or tile_size < 152:
        raise ConfigError(f"--tile-size must be a multiple of 8 and at least 152 px, got {tile_size}")
    torch_device = resolve_device(device)
    source = Path(content)
    if not source.exists():
        raise ImageReadError(f"{'video' if is_video(source) else 'photo'} not found: {source}")
    started = time.perf_counter()

    if source.is_dir():
        photos = photos_in(source)
        if not photos:
            raise ImageReadError(f"no photos in {source} (looked for .png, .jpg, .jpeg, .webp, .bmp, .tif, .gif)")
        targets = _folder_targets(photos, Path(output))
        for target in targets:
            check_writable(target, overwrite, inputs=[unet, *photos], create_dirs=True)
        model, metadata = load_unet(unet)
        restyler = Restyler(model, size, tile_size, norm_stats, torch_device,  # type: ignore[arg-type]
                        training_size_of(metadata))
        failed = []
        bar = _bar(quiet, len(photos), "photo", "apply")
        try:
            for photo, target in zip(photos, targets):
                try:
                    image = _guard(lambda: restyler.file(photo), str(photo), tile_size)
                except ImageReadError as exc:
                    failed.append(photo)
                    click.echo(f"\nskipped: {exc}", err=True)
                    continue
                finally:
                    if bar is not None:
                        bar.update(1)
                _save(save_image, image, target, metadata, photo, unet, overwrite)
        finally:
            if bar is not None:
                bar.close()
        done = len(photos) - len(failed)
        if not quiet:
            click.echo(f"wrote {done} image(s) to {output} in {time.perf_counter() - started:.1f} s", err=True)
        if failed:
            raise ClipstyleError(f"{len(failed)} of {len(photos)} photos could not be read (listed above); "
                                 "the others were written")
        return

    if is_video(source):
        target = Path(output)
        if target.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ConfigError(f"a video's output must end in one of {', '.join(OUTPUT_SUFFIXES)}: {target}")
        import_av()
        check_output_file(target, overwrite, inputs=[unet, content])
        info = probe(source)
        hw = target_hw(info.height, info.width, size)
        model, metadata = load_unet(unet)
        restyler = Restyler(model, size, tile_size, norm_stats, torch_device,  # type: ignore[arg-type]
                        training_size_of(metadata))
        bar = _bar(quiet, info.frames or None, "frame", "apply")
        try:
            frames = _guard(lambda: stylize_video(source, target, restyler.image, hw,
                                                  progress=(lambda n: bar.update(1)) if bar is not None else None),
                            f"{info.width}x{info.height} px frames", tile_size)
        finally:
            if bar is not None:
                bar.close()
        if not quiet:
            seconds = time.perf_counter() - started
            click.echo(f"wrote {target} ({frames} frames, {hw[1] - hw[1] % 2}x{hw[0] - hw[0] % 2} px, "
                       f"{float(info.rate):.3g} fps) in {seconds:.1f} s ({frames / max(seconds, 1e-9):.2f} frames/s)",
                       err=True)
        return

    out_path = check_writable(output, overwrite, inputs=[unet, content], create_dirs=False)
    model, metadata = load_unet(unet)  # a bad U-Net file is reported before the photo is decoded
    opened = read_image(source, "photo")
    width, height = opened.width, opened.height
    check_min_size(height, width, "photo")
    target_hw(height, width, size)
    held = [pil_to_rgb8(opened)]  # popped by the work below, so the input is freed before the output is saved
    del opened  # keep only the 8-bit array
    restyler = Restyler(model, size, tile_size, norm_stats, torch_device,  # type: ignore[arg-type]
                        training_size_of(metadata))
    bar = _bar(quiet, None, "tile", "apply")
    try:
        image = _guard(lambda: restyler.image(held.pop(), _tile_progress(bar)), f"{width}x{height} px", tile_size)
    finally:
        if bar is not None:
            bar.close()
    written = _save(save_image, image, out_path, metadata, source, unet, overwrite)
    if not quiet:
        click.echo(f"wrote {written} ({image.shape[1]}x{image.shape[0]} px) in "
                   f"{time.perf_counter() - started:.1f} s", err=True)


@click.command("apply")
@click.argument("unet", type=click.Path(dir_okay=False))
@click.argument("content", type=click.Path())
@click.option("-o", "--output", required=True,
              help="Output image (.png, .jpg, .webp) or video (.mp4, .mov, .mkv, .webm); for a folder CONTENT, a "
                   "folder (made if missing) that gets <name>.png per photo.")
@click.option("--output-size", type=int, default=None,
              help="Long side of the output in px [default: the input's own size].")
@click.option("--output-scale", type=float, default=None,
              help="Output size as a multiple of the input's (0.5: half the width and height). Patterns keep "
                   "their size in pixels, so a smaller scale makes them larger relative to the picture.")
@click.option("--max-output-size", type=int, default=None, help="Cap on the output's long side in px [default: none].")
@click.option("--tile-size", type=int, default=DEFAULT_TILE_SIZE, show_default=True,
              help="Images larger than this (px a side) are applied tile by tile; ~0.9 KB of memory per tile pixel.")
@click.option("--norm-stats", type=click.Choice(STATS_MODES), default="thumbnail", show_default=True,
              help="Tiled images: InstanceNorm statistics from a thumbnail (one small pass) or exact (as untiled; "
                   "about 8 passes' compute).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@handle_errors
def apply_command(unet: str, content: str, output: str, output_size: int | None, output_scale: float | None,
                  max_output_size: int | None, tile_size: int, norm_stats: str, device: str, overwrite: bool,
                  quiet: bool) -> None:
    """Restyle CONTENT with a U-Net saved by `stylize --save-unet` (no training).

    CONTENT is a photo, a folder of photos (the U-Net is loaded once), or a
    video (.mp4, .mov, .mkv, .webm, .avi: every frame, same frame rate, audio
    kept; needs the `video` extra). Outputs are written atomically.
    """
    run_apply(unet, content, output, output_size=output_size, output_scale=output_scale,
              max_output_size=max_output_size, tile_size=tile_size, norm_stats=norm_stats, device=device,
              overwrite=overwrite, quiet=quiet)


def _guard(work: Callable[[], Any], what: str, tile_size: int) -> Any:
    """Run ``work``; out-of-memory becomes one line naming what to lower."""
    try:
        return work()
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise _out_of_memory(what, tile_size) from None


def _save(save_image: Callable[..., Path], image: Any, target: Path, metadata: dict[str, Any], content: Path,
          unet: str, overwrite: bool) -> Path:
    from PIL import Image

    pil = Image.fromarray(image, "RGB")
    return save_image(pil, target, {**metadata, "content": str(content), "applied_from": unet,
                                    "output_size": [int(image.shape[0]), int(image.shape[1])]},
                      overwrite=overwrite)


__all__ = ["apply_command", "run_apply"]
