"""The contact sheet: every run's image in one labelled PNG, rows one axis, columns another.

Axes other than the two chosen are folded into the rows (one row per
combination), so every run has exactly one cell.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from ..errors import ConfigError
from ..imageio import atomic_write

#: The contact sheet's file name in a sweep directory.
SHEET = "contact_sheet.png"
CELL = 160
"""Long side of a thumbnail (px)."""
#: Height (px) of the run-id caption under each thumbnail.
CAPTION_H = 16
#: Height (px) of the column header row.
HEADER_H = 22
#: Width (px) of the row label column.
LABEL_W = 200
#: Gap (px) between cells.
PAD = 4
_NON_COLUMN = ("content", "prompt", "style_image", "seed")


def choose_layout(varying: Sequence[str], rows: Optional[str] = None,
                  cols: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """The (row axis, column axis): as asked (each must be an axis that varies), else columns the last varying
    setting (a grid/zip/variant axis), rows the first other varying axis."""
    for flag, axis in (("--rows", rows), ("--cols", cols)):
        if axis is not None and axis not in varying:
            shown = ", ".join(varying) or "none vary"
            raise ConfigError(f"{flag}: {axis!r} is not an axis that varies in this sweep ({shown})")
    if rows is not None and rows == cols:
        raise ConfigError(f"--rows and --cols are both {rows!r}; choose two different axes")
    if cols is None:
        settings = [a for a in varying if a not in _NON_COLUMN and a != rows]
        others = [a for a in varying if a != rows]
        cols = settings[-1] if settings else (others[-1] if others else None)
    if rows is None:
        rows = next((a for a in varying if a != cols), None)
    return rows, cols


def _font(size: int = 12) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _show(axis: str, value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{axis}={value}"


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _sorted_values(values: list[Any]) -> list[Any]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return values


def sheet_layout(rows: Sequence[dict[str, Any]], varying: Sequence[str], rows_axis: Optional[str],
                 cols_axis: Optional[str]) -> tuple[list[tuple], list[Any], dict[tuple, dict[str, Any]]]:
    """(row keys, column values, cell -> run row). A row key is the row axis's value, then the other axes'."""
    others = [a for a in varying if a not in (rows_axis, cols_axis)]
    row_axes = ([rows_axis] if rows_axis else []) + others
    row_keys: dict[str, tuple] = {}
    col_values: dict[str, Any] = {}
    cells: dict[tuple, dict[str, Any]] = {}
    for run in rows:
        row_key = tuple(run.get(a) for a in row_axes)
        col_value = run.get(cols_axis) if cols_axis else None
        row_keys.setdefault(_key(row_key), row_key)
        col_values.setdefault(_key(col_value), col_value)
        cells[(_key(row_key), _key(col_value))] = run
    ordered_cols = _sorted_values(list(col_values.values()))
    return list(row_keys.values()), ordered_cols, cells


def contact_sheet(directory: str | os.PathLike, rows: Sequence[dict[str, Any]], varying: Sequence[str], *,
                  rows_axis: Optional[str] = None, cols_axis: Optional[str] = None, cell: int = CELL,
                  name: str = SHEET) -> Path:
    """Draw ``DIR/contact_sheet.png`` from the result rows (images read from ``DIR/runs``); returns its path.

    Column headers name the column axis's value, the left label each row's axis values; each cell is
    captioned with its run id (failed runs: a grey cell captioned with "failed").
    """
    root = Path(directory)
    rows_axis, cols_axis = choose_layout(varying, rows_axis, cols_axis)
    row_keys, col_values, cells = sheet_layout(rows, varying, rows_axis, cols_axis)
    others = [a for a in varying if a not in (rows_axis, cols_axis)]
    row_axes = ([rows_axis] if rows_axis else []) + others
    font = _font(12)
    label_w = LABEL_W if row_axes else 0  # one varying axis: no row labels
    cell_w, cell_h = cell + 2 * PAD, cell + CAPTION_H + 2 * PAD
    width = label_w + cell_w * max(1, len(col_values))
    height = HEADER_H + cell_h * len(row_keys)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for j, value in enumerate(col_values):
        text = _show(cols_axis, value) if cols_axis else ""
        draw.text((label_w + j * cell_w + PAD, 4), text, fill="black", font=font)
    for i, row_key in enumerate(row_keys):
        top = HEADER_H + i * cell_h
        for line, (axis, value) in enumerate(zip(row_axes, row_key)):
            draw.text((PAD, top + PAD + line * 14), _show(axis, value)[:32], fill="black", font=font)
        for j, value in enumerate(col_values):
            run = cells.get((_key(row_key), _key(value)))
            if run is None:
                continue
            left = label_w + j * cell_w + PAD
            caption = str(run.get("run_id", ""))
            image_file = root / str(run.get("image") or "")
            if run.get("status") == "ok" and image_file.is_file():
                with Image.open(image_file) as opened:
                    scale = cell / max(opened.width, opened.height)  # small outputs are enlarged to the cell
                    size = (max(1, round(opened.width * scale)), max(1, round(opened.height * scale)))
                    thumb = opened.convert("RGB").resize(size, Image.Resampling.LANCZOS)
                sheet.paste(thumb, (left + (cell - thumb.width) // 2, top + PAD + (cell - thumb.height) // 2))
            else:
                draw.rectangle((left, top + PAD, left + cell - 1, top + PAD + cell - 1), fill=(200, 200, 200))
                caption = f"{caption} failed"
            draw.text((left, top + PAD + cell + 2), caption, fill="black", font=font)
    target = root / name
    atomic_write(target, lambda tmp: sheet.save(tmp, format="PNG"))
    return target


__all__ = ["contact_sheet", "choose_layout", "sheet_layout", "SHEET", "CELL", "CAPTION_H", "HEADER_H", "LABEL_W",
           "PAD"]
