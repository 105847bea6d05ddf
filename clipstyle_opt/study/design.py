"""The study's design, pure and seeded: names, questions, the units to rate, who rates what, and the
attention checks (placed among a rater's items, and judged once answered).

Assignment: the units in one seeded random order, repeated ``per_item`` times end to end, cut into
sheets of ``per_rater``. Any ``per_rater`` consecutive places of that cycle hold distinct units, so no
sheet holds a unit twice and every unit lands on exactly ``per_item`` sheets; only the last sheet may be
shorter. Each sheet's order is then shuffled, and its checks mixed in.
"""
from __future__ import annotations

import random
import re
from typing import Any, Optional, Sequence

from ..errors import ConfigError

DESIGNS = ("mos", "pairwise")
QUESTIONS = ("style", "content")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# The answers that pass a control. mos: the photo shown as the result keeps the photo (4-5) and does not
# clearly show the text's style (1-3). pairwise: value 1 is the photo, 2 a stylized output.
CONTROL_EXPECT = {"mos": {"content": [4, 5], "style": [1, 2, 3]}, "pairwise": {"content": [1], "style": [2]}}
MAX_REPEAT_DIFF = 1  # mos: a repeated item answered more than 1 point apart on a question fails


def check_name(name: str) -> str:
    """A study name: 1-64 letters, digits, ``_`` or ``-`` (never a path); `ConfigError` otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid study name {name!r}: use 1-64 letters, digits, '_' or '-', starting with "
                          "a letter or digit")
    return name


def questions(design: str, prompt: str) -> list[dict[str, Any]]:
    """The questions of one screen, as the API sends them (the prompt is the only text shown)."""
    if design == "mos":
        scale = {"type": "scale", "min": 1, "max": 5, "low": "not at all", "high": "completely"}
        return [{"key": "style", "text": f"How well does the result match the text \u201c{prompt}\u201d?", **scale},
                {"key": "content", "text": "How well does the result keep the content of the photo?", **scale}]
    choice = {"type": "choice", "min": 1, "max": 2, "choices": ["left", "right"]}
    return [{"key": "style", "text": f"Which matches the text \u201c{prompt}\u201d better?", **choice},
            {"key": "content", "text": "Which keeps the photo better?", **choice}]


def make_units(groups: dict[tuple[str, str], list[int]], labels: Sequence[str], design: str) -> list[list[int]]:
    """Units to rate, each a list of output indices: one output (mos) or two outputs of the same photo and
    prompt with different labels (pairwise, every such pair, ordered by label)."""
    units: list[list[int]] = []
    for members in groups.values():
        if design == "mos":
            units += [[i] for i in members]
            continue
        ordered = sorted(members, key=lambda i: (labels[i], i))
        units += [[a, b] for n, a in enumerate(ordered) for b in ordered[n + 1:] if labels[a] != labels[b]]
    return units


def make_sheets(n_units: int, per_item: int, per_rater: Optional[int], seed: int) -> list[list[int]]:
    """Unit indices per sheet (see the module docstring); ``per_rater`` None = every unit."""
    if n_units < 1:
        raise ConfigError("nothing to rate: the directories hold no output (pairwise: no two outputs of "
                          "the same photo and prompt with different labels)")
    per_rater = n_units if per_rater is None else per_rater
    if not 1 <= per_rater <= n_units:
        raise ConfigError(f"--per-rater must be in 1..{n_units} (the number of items), got {per_rater}")
    if per_item < 1:
        raise ConfigError(f"--per-item must be at least 1, got {per_item}")
    rng = random.Random(seed)
    order = list(range(n_units))
    rng.shuffle(order)
    cycle = order * per_item
    sheets = [cycle[i:i + per_rater] for i in range(0, len(cycle), per_rater)]
    for sheet in sheets:
        rng.shuffle(sheet)
    return sheets


def place_checks(sheet: list[int], rng: random.Random) -> list[tuple[str, int]]:
    """The sheet as screens: ("main", unit) in order, one ("repeat", unit) of a random unit at least two
    screens after it when the sheet allows, and one ("control", unit) at a random place (the control
    is built from that unit's photo and prompt)."""
    screens: list[tuple[str, int]] = [("main", u) for u in sheet]
    repeated = rng.randrange(len(sheet))
    first = min(repeated + 3, len(screens))
    screens.insert(rng.randint(first, len(screens)), ("repeat", sheet[repeated]))
    screens.insert(rng.randint(0, len(screens)), ("control", sheet[rng.randrange(len(sheet))]))
    return screens


def attention_failures(design: str, kind: str, expect: Optional[dict[str, Any]], answers: dict[str, int],
                       original: Optional[dict[str, int]] = None) -> list[str]:
    """Why one answered check fails (empty: it passes). ``original``: the answers to the repeated item."""
    failures = []
    if kind == "control" and expect:
        for question, allowed in expect.items():
            if question in answers and answers[question] not in allowed:
                failures.append(f"control: {question} answered {answers[question]}, expected "
                                f"{'/'.join(map(str, allowed))}")
    if kind == "repeat" and original:
        for question, value in answers.items():
            first = original.get(question)
            if first is None:
                continue
            if design == "mos" and abs(value - first) > MAX_REPEAT_DIFF:
                failures.append(f"repeat: {question} answered {first} then {value}")
            if design == "pairwise" and value != first:
                failures.append(f"repeat: {question} chose {'AB'[first - 1]} then {'AB'[value - 1]}")
    return failures
