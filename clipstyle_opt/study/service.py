"""What the JSON API does, without HTTP: join a study, fetch the next screen, store answers, check the
admin token, hand out images. Every refusal is a `StudyError` carrying its HTTP status and one line.

Study, item and sheet rows never change once created, so they are cached per process; raters and ratings
are always read from the database, which is what makes a restarted server resume every rater.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import ConfigError
from .design import check_name, questions
from .records import load_records, progress
from .schema import Item, Rater, Rating, Sheet, StoredImage, Study, StudyError, reader

MAX_PARTICIPANT = 200
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _swapped(token: str, item_id: int) -> bool:
    """Whether a pairwise screen shows its second output on the left: fixed per rater and item, so a
    reopened page shows the same sides."""
    return hashlib.sha256(f"{token}:{item_id}".encode()).digest()[0] & 1 == 1


class StudyService:
    """The API's operations on one database (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reads = reader(engine)
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # one rater joins at a time in this process: balanced sheets

    def study(self, name: str) -> dict[str, Any]:
        """The cached study: its row, items by id and sheets (404 for no such study, 400 for a bad name)."""
        try:
            check_name(name)
        except ConfigError as exc:
            raise StudyError(str(exc), 400) from None
        if name not in self._cache:
            with Session(self.reads) as session:
                study = session.scalar(select(Study).where(Study.name == name))
                if study is None:
                    raise StudyError(f"no study named {name!r}", 404)
                items = {i.id: i for i in session.scalars(select(Item).where(Item.study_id == study.id))}
                sheets = {s.id: list(s.item_ids) for s in
                          session.scalars(select(Sheet).where(Sheet.study_id == study.id).order_by(Sheet.position))}
                images = set(session.scalars(select(StoredImage.sha256).where(StoredImage.study_id == study.id)))
                session.expunge_all()
            self._cache[name] = {"row": study, "items": items, "sheets": sheets, "images": images}
        return self._cache[name]

    def info(self, name: str) -> dict[str, Any]:
        """The study's public description: name, design, screens per rater and its questions (no answers)."""
        study = self.study(name)
        row = study["row"]
        return {"study": name, "design": row.design, "screens": max(len(s) for s in study["sheets"].values()),
                "questions": [{k: v for k, v in q.items() if k != "text"} for q in questions(row.design, "")]}

    def _rater(self, session: Session, study: dict[str, Any], token: Any) -> Rater:
        if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
            raise StudyError("unknown rater: join the study first (POST .../raters)", 404)
        rater = session.scalar(select(Rater).where(Rater.token == token, Rater.study_id == study["row"].id))
        if rater is None:
            raise StudyError("unknown rater: join the study first (POST .../raters)", 404)
        return rater

    def add_rater(self, name: str, participant: Optional[str]) -> dict[str, Any]:
        """A new rater on the least used sheet; the same external participant id gets its rater back."""
        study = self.study(name)
        if participant is not None:
            if not isinstance(participant, str) or not 1 <= len(participant) <= MAX_PARTICIPANT:
                raise StudyError(f"participant must be a string of 1-{MAX_PARTICIPANT} characters", 422)
        with self._lock, Session(self.engine) as session, session.begin():
            if participant is not None:
                known = session.scalar(select(Rater).where(Rater.study_id == study["row"].id,
                                                           Rater.participant == participant))
                if known is not None:
                    return {"rater": known.token, "resumed": True}
            counts = dict(session.execute(select(Rater.sheet_id, func.count()).where(
                Rater.study_id == study["row"].id).group_by(Rater.sheet_id)).all())
            sheet_id = min(study["sheets"], key=lambda s: (counts.get(s, 0), list(study["sheets"]).index(s)))
            token = secrets.token_urlsafe(16)
            code = study["row"].completion_code or secrets.token_hex(4).upper()
            session.add(Rater(study_id=study["row"].id, token=token, participant=participant, sheet_id=sheet_id,
                              code=code))
        return {"rater": token, "resumed": False}

    def next_screen(self, name: str, token: Any) -> dict[str, Any]:
        """The rater's first unanswered screen, or ``{"done": true, "code": ...}``."""
        study = self.study(name)
        with Session(self.reads) as session:
            rater = self._rater(session, study, token)
            answered = set(session.scalars(select(Rating.item_id).where(Rating.rater_id == rater.id)))
            sheet, code = study["sheets"][rater.sheet_id], rater.code
        for index, item_id in enumerate(sheet):
            if item_id not in answered:
                return self._screen(name, study, study["items"][item_id], token, index, len(sheet))
        return {"done": True, "code": code, "total": len(sheet)}

    def _screen(self, name: str, study: dict[str, Any], item: Item, token: str, index: int,
                total: int) -> dict[str, Any]:
        url = f"/api/studies/{name}/images/"
        shown = [o["sha256"] for o in item.outputs]
        if study["row"].design == "mos":
            images = [{"role": "photo", "url": url + item.content_sha256}, {"role": "result", "url": url + shown[0]}]
        else:
            if _swapped(token, item.id):
                shown.reverse()
            images = [{"role": "photo", "url": url + item.content_sha256},
                      {"role": "left", "url": url + shown[0]}, {"role": "right", "url": url + shown[1]}]
        return {"item": item.id, "index": index, "total": total, "prompt": item.prompt, "images": images,
                "questions": questions(study["row"].design, item.prompt)}

    def submit(self, name: str, body: Any) -> dict[str, Any]:
        """Store one screen's answers (all its questions, in one transaction; pairwise: 1 = the left image,
        2 = the right one, as `next_screen` showed them). The same answers again are a no-op (``stored: 0``); different answers to a stored question are refused (409: append-only)."""
        study = self.study(name)
        if not isinstance(body, dict):
            raise StudyError("the body must be a JSON object {rater, item, answers}", 422)
        token, item_id, answers = body.get("rater"), body.get("item"), body.get("answers")
        design = study["row"].design
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            raise StudyError("item must be an integer item id", 422)
        keys = [q["key"] for q in questions(design, "")]
        if not isinstance(answers, dict) or sorted(answers) != sorted(keys):
            raise StudyError(f"answers must be an object with exactly the keys {', '.join(keys)}", 422)
        top = 5 if design == "mos" else 2
        for key in keys:
            value = answers[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise StudyError(f"answer {key!r} must be an integer in 1..{top}, got {value!r}", 422)
        for attempt in range(2):
            try:
                return self._store(study, token, item_id, answers)
            except IntegrityError:
                if attempt:  # a concurrent identical submit won the race: the check above now sees its rows
                    raise StudyError("could not store the answers, please retry", 503) from None
        raise AssertionError("unreachable")

    def _store(self, study: dict[str, Any], token: Any, item_id: int, answers: dict[str, int]) -> dict[str, Any]:
        with Session(self.engine) as session, session.begin():
            rater = self._rater(session, study, token)
            sheet = study["sheets"][rater.sheet_id]
            if item_id not in sheet:
                raise StudyError(f"item {item_id} is not assigned to this rater", 403)
            swapped = study["row"].design == "pairwise" and _swapped(rater.token, item_id)
            if swapped:  # the page answers 1 = left, 2 = right; we store 1/2 = the item's first/second output
                answers = {key: 3 - value for key, value in answers.items()}
            stored = {r.question: r.value for r in session.scalars(
                select(Rating).where(Rating.rater_id == rater.id, Rating.item_id == item_id))}
            if stored:
                if stored == answers:
                    return {"ok": True, "stored": 0, "duplicate": True}
                raise StudyError(f"item {item_id} was already answered differently; ratings cannot be changed", 409)
            for question, value in answers.items():
                session.add(Rating(study_id=study["row"].id, rater_id=rater.id, item_id=item_id, question=question,
                                   value=value, swapped=swapped))
        return {"ok": True, "stored": len(answers), "duplicate": False}

    def check_admin(self, name: str, token: Optional[str]) -> None:
        """403 unless ``token`` is the study's admin token (compared in constant time)."""
        study = self.study(name)
        given = hashlib.sha256((token or "").encode("utf-8")).hexdigest()
        if not token or not hmac.compare_digest(given, study["row"].admin_hash):
            raise StudyError("the admin API needs the study's admin token (Authorization: Bearer TOKEN)", 403)

    def progress(self, name: str, token: Optional[str]) -> dict[str, Any]:
        """Progress per item and per rater, and attention-check failures; 403 without the admin token."""
        self.check_admin(name, token)
        return progress(load_records(self.reads, name))

    def image(self, name: str, sha256: str) -> tuple[str, bytes]:
        """(media type, bytes) of an image of this study; 404 for anything else."""
        study = self.study(name)
        if not _SHA_RE.fullmatch(sha256) or sha256 not in study["images"]:
            raise StudyError("no such image in this study", 404)
        with Session(self.reads) as session:
            image = session.get(StoredImage, (study["row"].id, sha256))
            assert image is not None
            return image.media_type, bytes(image.data)
