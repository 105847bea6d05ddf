"""`clipstyle study create`: a study's items, images, sheets and admin token, written in one transaction."""
from __future__ import annotations

import hashlib
import os
import random
import secrets
from dataclasses import dataclass
from typing import Optional, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConfigError
from .design import CONTROL_EXPECT, DESIGNS, check_name, make_sheets, make_units, place_checks
from .items import DEFAULT_MAX_SIDE, find_outputs, stored_bytes
from .schema import Item, Sheet, StoredImage, Study, StudyError, open_engine


@dataclass(frozen=True)
class Created:
    """What `create_study` made: the admin token (shown once, stored only as its sha256) and counts."""
    name: str
    admin_token: str
    items: int
    sheets: int
    outputs: int


def token_hash(token: str) -> str:
    """The SHA-256 hex digest of an admin token: only the digest is stored, never the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_study(db: str, name: str, directories: Sequence[str | os.PathLike], *, design: str = "mos",
                 per_item: int = 5, per_rater: Optional[int] = None, seed: int = 0,
                 label_from: Optional[str] = None, checks: bool = True, completion_code: Optional[str] = None,
                 max_side: int = DEFAULT_MAX_SIDE) -> Created:
    """Build study ``name`` in ``db`` from the outputs under ``directories`` (see the module docstrings of
    `items` and `design`). per_item: ratings each item gets (>= 1); per_rater: items per rater (None: all);
    max_side: long side (px, 64..4096) above which images are stored shrunk. Refuses an existing name."""
    check_name(name)
    if design not in DESIGNS:
        raise ConfigError(f"--design must be one of {', '.join(DESIGNS)}, got {design!r}")
    if not 64 <= max_side <= 4096:
        raise ConfigError(f"--max-side must be in 64..4096 px, got {max_side}")
    if completion_code is not None and not 1 <= len(completion_code) <= 64:
        raise ConfigError("--completion-code must be 1-64 characters")
    outputs = find_outputs(directories, label_from)
    groups: dict[tuple[str, str], list[int]] = {}
    for index, output in enumerate(outputs):
        groups.setdefault((str(output.content.resolve()), output.prompt), []).append(index)
    units = make_units(groups, [o.label for o in outputs], design)
    sheets = make_sheets(len(units), per_item, per_rater, seed)
    engine = open_engine(db, create=True)
    token = secrets.token_urlsafe(24)
    try:
        with Session(engine) as session, session.begin():
            if session.scalar(select(Study.id).where(Study.name == name)) is not None:
                raise StudyError(f"a study named {name!r} exists in {db}; choose another name", 409)
            study = Study(name=name, design=design, per_item=per_item, per_rater=len(sheets[0]), seed=seed,
                          admin_hash=token_hash(token), completion_code=completion_code,
                          settings={"directories": [str(d) for d in directories], "label_from": label_from,
                                    "checks": checks, "max_side": max_side})
            session.add(study)
            session.flush()
            shas: dict[str, str] = {}

            def store(path: os.PathLike) -> str:
                key = str(path)
                if key not in shas:
                    blob = stored_bytes(path, max_side)
                    if session.get(StoredImage, (study.id, blob.sha256)) is None:
                        session.add(StoredImage(study_id=study.id, sha256=blob.sha256,
                                                media_type=blob.media_type, data=blob.data))
                    shas[key] = blob.sha256
                return shas[key]

            def described(index: int) -> dict[str, str]:
                o = outputs[index]
                return {"sha256": store(o.path), "label": o.label, "source": o.source}

            main: list[Item] = []
            for unit in units:
                first = outputs[unit[0]]
                main.append(Item(study_id=study.id, kind="main", content_sha256=store(first.content),
                                 content_name=first.content.name, prompt=first.prompt,
                                 outputs=[described(i) for i in unit]))
            session.add_all(main)
            session.flush()
            repeats: dict[int, Item] = {}
            controls: dict[tuple[str, str], Item] = {}
            rng = random.Random(f"checks-{seed}")
            for position, sheet in enumerate(sheets):
                screens = place_checks(sheet, rng) if checks else [("main", u) for u in sheet]
                ids = []
                for kind, unit in screens:
                    item = main[unit]
                    if kind == "repeat":
                        if unit not in repeats:
                            repeats[unit] = Item(study_id=study.id, kind="repeat", ref_id=item.id,
                                                 content_sha256=item.content_sha256, content_name=item.content_name,
                                                 prompt=item.prompt, outputs=item.outputs)
                            session.add(repeats[unit])
                            session.flush()
                        item = repeats[unit]
                    elif kind == "control":
                        key = (item.content_sha256, item.prompt)
                        if key not in controls:
                            photo = {"sha256": item.content_sha256, "label": "(photo)",
                                     "source": item.content_name}
                            shown = [photo] if design == "mos" else [photo, item.outputs[-1]]
                            controls[key] = Item(study_id=study.id, kind="control",
                                                 content_sha256=item.content_sha256, content_name=item.content_name,
                                                 prompt=item.prompt, outputs=shown, expect=CONTROL_EXPECT[design])
                            session.add(controls[key])
                            session.flush()
                        item = controls[key]
                    ids.append(item.id)
                session.add(Sheet(study_id=study.id, position=position, item_ids=ids))
    finally:
        engine.dispose()
    return Created(name, token, len(units), len(sheets), len(outputs))
