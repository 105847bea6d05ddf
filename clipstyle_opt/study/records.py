"""The read side of a study: its rows as plain records, each rater's answers and attention-check failures.
Shared by the admin progress, the export and the analysis so the three agree."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from .design import attention_failures, check_name
from .schema import Item, Rater, Rating, Sheet, Study, StudyError


@dataclass
class StudyRecords:
    """A study as records: its row, items by id, sheets by id, raters, and ratings in insertion order."""
    study: dict[str, Any]
    items: dict[int, dict[str, Any]]
    sheets: dict[int, list[int]]
    raters: list[dict[str, Any]]
    ratings: list[dict[str, Any]]

    def answers(self) -> dict[int, dict[int, dict[str, int]]]:
        """rater id -> item id -> {question: value}."""
        out: dict[int, dict[int, dict[str, int]]] = {}
        for r in self.ratings:
            out.setdefault(r["rater_id"], {}).setdefault(r["item_id"], {})[r["question"]] = r["value"]
        return out

    def failures(self) -> dict[int, list[str]]:
        """rater id -> why their answered attention checks fail (absent: none failed)."""
        out: dict[int, list[str]] = {}
        for rater_id, by_item in self.answers().items():
            reasons: list[str] = []
            for item_id, answers in by_item.items():
                item = self.items[item_id]
                if item["kind"] == "main":
                    continue
                original = by_item.get(item["ref_id"]) if item["ref_id"] is not None else None
                reasons += attention_failures(self.study["design"], item["kind"], item["expect"], answers, original)
            if reasons:
                out[rater_id] = reasons
        return out


def _row(obj: Any, columns: list[str]) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in columns}


def load_records(engine: Engine, name: str) -> StudyRecords:
    """Everything of study ``name``; `StudyError` 404 when there is none."""
    check_name(name)
    with Session(engine) as session:
        study = session.scalar(select(Study).where(Study.name == name))
        if study is None:
            raise StudyError(f"no study named {name!r} in this database", 404)
        items = {i.id: _row(i, ["id", "kind", "ref_id", "content_sha256", "content_name", "prompt", "outputs",
                                "expect"])
                 for i in session.scalars(select(Item).where(Item.study_id == study.id))}
        sheets = {s.id: list(s.item_ids) for s in session.scalars(select(Sheet).where(Sheet.study_id == study.id))}
        raters = [_row(r, ["id", "token", "participant", "sheet_id", "code", "created"])
                  for r in session.scalars(select(Rater).where(Rater.study_id == study.id).order_by(Rater.id))]
        ratings = [_row(r, ["id", "rater_id", "item_id", "question", "value", "swapped", "created"])
                   for r in session.scalars(select(Rating).where(Rating.study_id == study.id).order_by(Rating.id))]
        info = _row(study, ["id", "name", "design", "per_item", "per_rater", "seed", "completion_code", "settings"])
    return StudyRecords(info, items, sheets, raters, ratings)


def progress(records: StudyRecords) -> dict[str, Any]:
    """The admin view: per main item its ratings (raters who answered it) against its target, per rater
    the screens answered of their sheet and any attention-check failure, and totals."""
    answers = records.answers()
    failures = records.failures()
    targets: dict[int, int] = {}
    for ids in records.sheets.values():
        for item_id in ids:
            targets[item_id] = targets.get(item_id, 0) + 1
    items = []
    for item in records.items.values():
        if item["kind"] != "main":
            continue
        rated = sum(1 for by_item in answers.values() if item["id"] in by_item)
        items.append({"item": item["id"], "labels": [o["label"] for o in item["outputs"]],
                      "content": item["content_name"], "prompt": item["prompt"], "ratings": rated,
                      "target": targets.get(item["id"], 0)})
    raters = []
    for rater in records.raters:
        sheet = records.sheets[rater["sheet_id"]]
        answered = sum(1 for item_id in sheet if item_id in answers.get(rater["id"], {}))
        raters.append({"rater": rater["token"], "participant": rater["participant"], "answered": answered,
                       "total": len(sheet), "done": answered == len(sheet),
                       "failures": failures.get(rater["id"], []), "code": rater["code"]})
    return {"study": records.study["name"], "design": records.study["design"],
            "per_item": records.study["per_item"], "items": items, "raters": raters,
            "totals": {"raters": len(raters), "done": sum(r["done"] for r in raters),
                       "ratings": len(records.ratings),
                       "items_complete": sum(i["ratings"] >= i["target"] for i in items), "items": len(items),
                       "raters_failing_checks": sum(bool(r["failures"]) for r in raters)}}
