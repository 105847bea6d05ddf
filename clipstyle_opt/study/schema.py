"""The study database: tables, the schema version checked at start, and how a URL becomes an engine.

Any SQLAlchemy URL works (``postgresql+psycopg://...`` for a hosted study); a plain file path means a
SQLite file. SQLite runs in WAL mode (readers never wait for the writer) and every transaction starts
with ``BEGIN IMMEDIATE``, so two writers queue on the busy timeout instead of failing on a stale snapshot.
Ratings are append-only: one row per (rater, item, question), enforced by a unique constraint.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, Text,
                        UniqueConstraint, create_engine, event, select)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..errors import ClipstyleError, ConfigError

SCHEMA_VERSION = 1
SQLITE_BUSY_TIMEOUT_S = 30.0


class StudyError(ClipstyleError):
    """A request or command the study cannot honour; ``status`` is the HTTP status a server answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """The declarative base of the study's tables."""


class SchemaVersion(Base):
    """One row: the schema version the database was created with, checked at start."""

    __tablename__ = "clipstyle_schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class Study(Base):
    """A study: its name, design, ratings per item, items per rater, seed and admin token digest."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    design: Mapped[str] = mapped_column(String(16))            # "mos" or "pairwise"
    per_item: Mapped[int] = mapped_column(Integer)
    per_rater: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    admin_hash: Mapped[str] = mapped_column(String(64))         # sha256 of the admin token
    completion_code: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class StoredImage(Base):
    """An image copied into the study (its bytes, keyed by their sha256): what the server serves."""
    __tablename__ = "images"
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Item(Base):
    """One screen's content. kind: "main", "repeat" (of ``ref_id``) or "control" (``expect`` holds the
    answers that pass). ``outputs``: [{sha256, label, source}] (1 for mos, 2 for pairwise)."""
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref_id: Mapped[Optional[int]] = mapped_column(ForeignKey("items.id"), nullable=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    content_name: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    expect: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)


class Sheet(Base):
    """The ordered item ids one rater gets (main items, then the checks mixed in)."""
    __tablename__ = "sheets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    item_ids: Mapped[list[int]] = mapped_column(JSON)


class Rater(Base):
    """A rater: a random token, the participant id the URL gave (as given), and the sheet assigned."""

    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)   # random; the rater's only identity
    participant: Mapped[Optional[str]] = mapped_column(String(200), nullable=True)  # as the URL gave it
    sheet_id: Mapped[int] = mapped_column(ForeignKey("sheets.id"))
    code: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Rating(Base):
    """Append-only: never updated or deleted. ``value``: 1..5 (mos) or 1/2 = the item's first/second output
    (pairwise, whatever side it was shown on); ``swapped``: the second output was shown on the left."""
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("rater_id", "item_id", "question", name="one_rating_per_question"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    question: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(Integer)
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def database_url(db: str) -> str:
    """``db`` as a SQLAlchemy URL: a URL as given, a plain path as a SQLite file."""
    return db if "://" in db else f"sqlite:///{db}"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the API answers 200
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        # Writers take the lock up front (IMMEDIATE) and queue on the busy timeout; `reader` engines start
        # a plain deferred transaction, which in WAL mode reads a snapshot without waiting for the writer.
        connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}")


def reader(engine: Engine) -> Engine:
    """``engine`` for read-only sessions: on SQLite its transactions do not take the write lock."""
    return engine.execution_options(sqlite_begin="DEFERRED")


def open_engine(db: str, *, create: bool = False) -> Engine:
    """An engine on ``db`` whose schema version is ours. ``create``: make the tables in a new database.

    Refuses (one line) a URL SQLAlchemy cannot parse, a database it cannot open, one without our tables
    (unless ``create``) and one written by another schema version.
    """
    url = database_url(db)
    try:
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite else {})
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"--db: not a database URL or path: {db} ({exc})") from None
    except ImportError as exc:
        raise ClipstyleError(f"--db: the driver for {db.split(':', 1)[0]} is not installed ({exc})") from None
    if sqlite:
        _sqlite_pragmas(engine)
    try:
        with engine.connect() as conn:
            has_version = engine.dialect.has_table(conn, SchemaVersion.__tablename__)
        if not has_version:
            if not create:
                raise StudyError(f"{db} holds no clipstyle study (create one with `clipstyle study create`)", 404)
            Base.metadata.create_all(engine)
            with engine.begin() as conn:
                conn.execute(SchemaVersion.__table__.insert().values(version=SCHEMA_VERSION))
        with engine.connect() as conn:
            versions = [row[0] for row in conn.execute(select(SchemaVersion.version))]
    except OperationalError as exc:
        raise ClipstyleError(f"cannot open the database {db}: {str(exc.orig).splitlines()[0]}") from None
    except SQLAlchemyError as exc:
        raise ClipstyleError(f"database error on {db}: {type(exc).__name__}") from None
    if versions != [SCHEMA_VERSION]:
        raise StudyError(f"{db} has study schema version {versions}, this clipstyle reads version "
                         f"{SCHEMA_VERSION}: use the clipstyle release that created it", 409)
    return engine
