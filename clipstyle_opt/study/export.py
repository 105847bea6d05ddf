"""A study's ratings as CSV, one line per rater and screen.

mos: the columns of the report page's rating export, which `clipstyle correlate` reads (``rater,
content_image, output, label, prompt, blind, shuffle_seed, position, style_rating, content_rating``),
then ``participant, item, check, failed_checks``. ``output`` is ``<dir name>/<path under it>``.
pairwise: ``rater, participant, item, check, failed_checks, content_image, prompt, output_a, output_b,
label_a, label_b, shown_left, position, style_choice, content_choice, style_winner, content_winner``
(choices ``a``/``b``; ``correlate`` reads only mos exports).
Attention-check screens (``check`` = repeat/control) are left out unless asked for.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from ..imageio import atomic_write, check_output_file
from .records import StudyRecords

MOS_COLUMNS = ["rater", "content_image", "output", "label", "prompt", "blind", "shuffle_seed", "position",
               "style_rating", "content_rating", "participant", "item", "check", "failed_checks"]
PAIRWISE_COLUMNS = ["rater", "participant", "item", "check", "failed_checks", "content_image", "prompt", "output_a",
                    "output_b", "label_a", "label_b", "shown_left", "position", "style_choice", "content_choice",
                    "style_winner", "content_winner"]


def export_rows(records: StudyRecords, *, with_checks: bool = False,
                drop_excluded: bool = False) -> list[dict[str, Any]]:
    """The export's rows, in the order the screens were submitted."""
    raters = {r["id"]: r for r in records.raters}
    failures = records.failures()
    answers = records.answers()
    design = records.study["design"]
    seen: set[tuple[int, int]] = set()
    rows = []
    for rating in records.ratings:
        key = (rating["rater_id"], rating["item_id"])
        if key in seen:
            continue
        seen.add(key)
        item = records.items[rating["item_id"]]
        rater = raters[rating["rater_id"]]
        if (item["kind"] != "main" and not with_checks) or (drop_excluded and rater["id"] in failures):
            continue
        given = answers[rater["id"]][item["id"]]
        sheet = records.sheets[rater["sheet_id"]]
        common = {"rater": rater["token"], "participant": rater["participant"] or "", "item": item["id"],
                  "check": "" if item["kind"] == "main" else item["kind"],
                  "failed_checks": "; ".join(failures.get(rater["id"], [])), "content_image": item["content_name"],
                  "prompt": item["prompt"], "position": sheet.index(item["id"])}
        outputs = item["outputs"]
        if design == "mos":
            rows.append({**common, "output": outputs[0]["source"], "label": outputs[0]["label"], "blind": 1,
                         "shuffle_seed": records.study["seed"], "style_rating": given.get("style", ""),
                         "content_rating": given.get("content", "")})
        else:
            row = {**common, "output_a": outputs[0]["source"], "output_b": outputs[1]["source"],
                   "label_a": outputs[0]["label"], "label_b": outputs[1]["label"],
                   "shown_left": "b" if rating["swapped"] else "a"}
            for question in ("style", "content"):
                value = given.get(question)
                row[f"{question}_choice"] = "ab"[value - 1] if value else ""
                row[f"{question}_winner"] = outputs[value - 1]["label"] if value else ""
            rows.append(row)
    return rows


def export_text(records: StudyRecords, *, with_checks: bool = False, drop_excluded: bool = False) -> str:
    """`export_rows` as CSV text."""
    columns = MOS_COLUMNS if records.study["design"] == "mos" else PAIRWISE_COLUMNS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(export_rows(records, with_checks=with_checks, drop_excluded=drop_excluded))
    return buffer.getvalue()


def write_export(records: StudyRecords, path: str | os.PathLike, *, with_checks: bool = False,
                 drop_excluded: bool = False, overwrite: bool = False) -> Path:
    """Write `export_text` atomically; refuses an existing file unless ``overwrite``."""
    path = check_output_file(path, overwrite)
    text = export_text(records, with_checks=with_checks, drop_excluded=drop_excluded)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path
