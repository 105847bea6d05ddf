"""`clipstyle study`: a study from a real tiny sweep and from method folders, served in-process on a free
loopback port, rated by simulated raters in parallel threads through the JSON API; bad requests; the
admin API; export and analyze through the CLI; and a server killed with SIGKILL between submits."""
from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from clipstyle_opt import sweep
from clipstyle_opt.cli import cli
from clipstyle_opt.study.create import create_study
from clipstyle_opt.study.records import load_records
from clipstyle_opt.study.schema import Rating, SchemaVersion, open_engine
from clipstyle_opt.study.server import ThreadedServer, free_port
from study_helpers import EXAMPLES, continue_rating, method_dirs, rate_all

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def count_ratings(db: str) -> int:
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Rating)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def tiny_sweep(tiny_clip_path, tmp_path_factory) -> Path:
    """A real `clipstyle sweep`: 2 photos x lambda_patch {0, 9000}, 1 step at 64 px (4 outputs)."""
    spec = {"contents": [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png")], "prompts": ["fire"],
            "base": {"clip_model": str(tiny_clip_path), "size": 64, "steps": 1, "n_crops": 2, "crop_size": 32,
                     "device": "cpu", "precision": "fp32", "max_output_size": 64},
            "grid": {"lambda_patch": [0, 9000]}}
    out = tmp_path_factory.mktemp("sweep") / "ablation"
    frame = sweep(spec, out)
    assert frame.attrs["failed"] == 0 and len(frame) == 4
    return out


@pytest.fixture(scope="module")
def sweep_study(tiny_sweep, tmp_path_factory):
    """Study "ablation" (mos, K=5, 4 items per rater: 5 sheets) created through the CLI, served in a thread."""
    db = str(tmp_path_factory.mktemp("db") / "study.sqlite")
    result = run("study", "create", "ablation", tiny_sweep, "--db", db, "--per-item", 5, "--per-rater", 4,
                 "--seed", 3, "--label-from", "lambda_patch")
    assert result.exit_code == 0, result.output
    token = result.output.split("admin token:")[1].split()[0]
    assert "/s/ablation" in result.output and "#token=" + token in result.output
    with ThreadedServer(db) as server:
        yield db, server.url, token


def rate_in_parallel(url: str, name: str, raters: int) -> list[tuple[str, list[dict]]]:
    def one(i: int):
        with httpx.Client(base_url=url, timeout=30) as client:
            return rate_all(client, name, participant=f"P{i}")
    with ThreadPoolExecutor(raters) as pool:
        return list(pool.map(one, range(raters)))


def test_five_parallel_raters_give_every_item_its_k_ratings_and_export_exactly_what_they_sent(sweep_study,
                                                                                              tmp_path):
    db, url, admin = sweep_study
    # The images were copied: the study no longer needs the sweep folder's files.
    results = rate_in_parallel(url, "ablation", 5)
    records = load_records(open_engine(db), "ablation")
    main = {i for i, item in records.items.items() if item["kind"] == "main"}
    per_item = Counter()
    for token, submitted in results:
        items = [s["item"] for s in submitted if s["item"] in main]
        assert len(items) == 4 and len(set(items)) == 4  # 4 distinct items each, + a repeat and a control
        assert len(submitted) == 6
        per_item.update(items)
    assert set(per_item.values()) == {5} and set(per_item) == main
    # Every submit was sent twice: stored once (2 questions per screen).
    assert count_ratings(db) == 5 * 6 * 2
    with httpx.Client(base_url=url) as client:
        progress = client.get("/api/studies/ablation/progress", headers={"Authorization": f"Bearer {admin}"}).json()
        assert progress["totals"] == {"raters": 5, "done": 5, "ratings": 60, "items_complete": 4, "items": 4,
                                      "raters_failing_checks": 0}
        assert all(item["ratings"] == item["target"] == 5 for item in progress["items"])
        web_export = client.get("/api/studies/ablation/export.csv", headers={"Authorization": f"Bearer {admin}"})
        assert web_export.status_code == 200
    out = tmp_path / "ratings.csv"
    assert run("study", "export", "ablation", "--db", db, "-o", out, "--with-checks").exit_code == 0
    assert out.read_text() == web_export.text
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    sent = sorted((token, s["item"], s["answers"]["style"], s["answers"]["content"])
                  for token, submitted in results for s in submitted)
    assert sorted((r["rater"], int(r["item"]), int(r["style_rating"]), int(r["content_rating"])) for r in rows) == sent
    labels = {r["label"] for r in rows if not r["check"]}
    assert labels == {"lambda_patch=0", "lambda_patch=9000"}
    assert all(r["output"].startswith("ablation/runs/") for r in rows if not r["check"])


def test_analyze_correlates_with_the_sweeps_results_table(sweep_study, tiny_sweep, tmp_path):
    db, _url, _ = sweep_study
    if count_ratings(db) == 0:
        rate_in_parallel(_url, "ablation", 5)
    out = tmp_path / "analysis"
    result = run("study", "analyze", "ablation", "--db", db, "-o", out, "--metrics", tiny_sweep / "results.csv",
                 "--bootstrap", 200)
    assert result.exit_code == 0, result.output
    for name in ("mos.csv", "mos.png", "agreement.csv", "excluded.csv", "report.md", "ratings.csv",
                 "correlation.csv"):
        assert (out / name).is_file(), name
    correlation = list(csv.DictReader((out / "correlation.csv").open()))
    assert {r["target"] for r in correlation} == {"style_rating", "content_rating"}
    assert "loss_total" in {r["metric"] for r in correlation}
    assert "| lambda_patch=0 | style |" in result.output
    # The same folder again is refused, not overwritten.
    again = run("study", "analyze", "ablation", "--db", db, "-o", out)
    assert again.exit_code == 1 and "exists" in again.output


@pytest.fixture
def method_study(tmp_path):
    folders = method_dirs(tmp_path / "outs", photos=("chelsea", "coffee"), prompts=("fire", "water"))
    db = str(tmp_path / "m.sqlite")
    # 12 outputs, K=2, 6 per rater: 4 sheets.
    made = create_study(db, "methods", folders, per_item=2, per_rater=6, seed=1)
    assert (made.items, made.sheets, made.outputs) == (12, 4, 12)
    return db, made.admin_token


def test_assignment_is_balanced_when_raters_see_part_of_the_items(method_study):
    db, _ = method_study
    shutil.rmtree(Path(db).parent / "outs")  # the study keeps its own copies of the images
    with ThreadedServer(db) as server:
        results = rate_in_parallel(server.url, "methods", 4)
        for image in results[0][1][0]["screen"]["images"]:
            response = httpx.get(server.url + image["url"])
            assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    records = load_records(open_engine(db), "methods")
    main = {i for i, item in records.items.items() if item["kind"] == "main"}
    raters_per_item: dict[int, set] = {}
    for token, submitted in results:
        mine = [s["item"] for s in submitted if s["item"] in main]
        assert len(mine) == len(set(mine)) == 6
        for item in mine:
            raters_per_item.setdefault(item, set()).add(token)
    assert set(raters_per_item) == main and {len(r) for r in raters_per_item.values()} == {2}


def test_bad_requests_get_a_4xx_with_a_message_and_store_nothing(method_study):
    db, admin = method_study
    with ThreadedServer(db) as server, httpx.Client(base_url=server.url) as client:
        token = client.post("/api/studies/methods/raters", json={}).json()["rater"]
        screen = client.get("/api/studies/methods/next", params={"rater": token}).json()
        other = client.post("/api/studies/methods/raters", json={}).json()["rater"]
        continue_rating(client, "methods", other, limit=1)
        before = count_ratings(db)
        assert before == 2
        records = load_records(open_engine(db), "methods")
        mine = set(records.sheets[next(r["sheet_id"] for r in records.raters if r["token"] == token)])
        stranger = next(i for i in records.items if i not in mine)  # an item of the study, not on this sheet
        good = {"style": 3, "content": 4}
        cases = {
            "unknown rater": ("POST", "/api/studies/methods/ratings",
                              {"json": {"rater": "A" * 22, "item": screen["item"], "answers": good}}),
            "out of range": ("POST", "/api/studies/methods/ratings",
                             {"json": {"rater": token, "item": screen["item"], "answers": {"style": 6, "content": 4}}}),
            "not an integer": ("POST", "/api/studies/methods/ratings",
                               {"json": {"rater": token, "item": screen["item"], "answers": {"style": 2.5,
                                                                                           "content": 4}}}),
            "missing question": ("POST", "/api/studies/methods/ratings",
                                 {"json": {"rater": token, "item": screen["item"], "answers": {"style": 2}}}),
            "not assigned": ("POST", "/api/studies/methods/ratings",
                             {"json": {"rater": token, "item": stranger, "answers": good}}),
            "oversized body": ("POST", "/api/studies/methods/ratings",
                               {"content": b'{"rater": "' + b"x" * 40_000 + b'"}',
                                "headers": {"content-type": "application/json"}}),
            "not json": ("POST", "/api/studies/methods/ratings", {"content": b"{nope"}),
            "name with path characters": ("GET", "/api/studies/..%5C..%5Cetc/next", {"params": {"rater": token}}),
            "name with a dot": ("POST", "/api/studies/methods.db/ratings", {"json": {"rater": token}}),
            "unknown study": ("GET", "/api/studies/nosuch/next", {"params": {"rater": token}}),
            "admin without token": ("GET", "/api/studies/methods/progress", {}),
            "admin with a wrong token": ("GET", "/api/studies/methods/progress",
                                         {"headers": {"Authorization": "Bearer " + admin[:-1] + "x"}}),
            "export without token": ("GET", "/api/studies/methods/export.csv", {}),
            "image path": ("GET", "/api/studies/methods/images/..%2F..%2Fm.sqlite", {}),
            "unknown image": ("GET", "/api/studies/methods/images/" + "0" * 64, {}),
        }
        expected = {"unknown rater": 404, "out of range": 422, "not assigned": 403, "oversized body": 413,
                    "name with a dot": 400, "unknown study": 404, "admin without token": 403,
                    "admin with a wrong token": 403, "export without token": 403, "unknown image": 404}
        for what, (method, path, kwargs) in cases.items():
            response = client.request(method, path, **kwargs)
            assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
            message = response.json().get("error")
            assert isinstance(message, str) and message, what
            assert response.status_code == expected.get(what, response.status_code), (what, response.status_code)
        assert count_ratings(db) == before
        # A changed answer to a stored screen is refused too (append-only); the same answer is a no-op.
        client.post("/api/studies/methods/ratings", json={"rater": token, "item": screen["item"], "answers": good})
        changed = client.post("/api/studies/methods/ratings",
                              json={"rater": token, "item": screen["item"], "answers": {"style": 1, "content": 4}})
        assert changed.status_code == 409 and count_ratings(db) == before + 2
    assert run("study", "create", "../evil", "--db", db, ROOT / "examples").exit_code == 2


def test_sqlite_runs_in_wal_mode_and_the_schema_version_is_checked_at_start(method_study):
    db, _ = method_study
    engine = open_engine(db)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with engine.begin() as conn:
        conn.execute(SchemaVersion.__table__.update().values(version=99))
    engine.dispose()
    result = run("study", "serve", "--db", db, "--port", free_port())
    assert result.exit_code == 1 and "schema version [99]" in result.output
    result = run("study", "export", "methods", "--db", str(Path(db).with_name("none.sqlite")), "-o", "x.csv")
    assert result.exit_code == 1 and "holds no clipstyle study" in result.output


def _start(db: str, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "clipstyle_opt.cli", "study", "serve", "--db", db, "--port",
                                str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode())
    process.kill()
    raise AssertionError("the server did not start")


def test_a_server_killed_with_sigkill_between_submits_resumes_the_rater_with_nothing_lost(method_study):
    db, _ = method_study
    port = free_port()
    process = _start(db, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            token, first = rate_all(client, "methods", participant="prolific-123", repeat_each=False, limit=3)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert count_ratings(db) == 6
        process = _start(db, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            # Reopening the link (same external id) gives the same rater, on the screen after the last one sent.
            assert client.post("/api/studies/methods/raters", json={"participant": "prolific-123"}).json() == \
                {"rater": token, "resumed": True}
            screen = client.get("/api/studies/methods/next", params={"rater": token}).json()
            assert screen["index"] == 3
            rest = continue_rating(client, "methods", token, repeat_each=False)
        assert len(first) + len(rest) == screen["total"]
        records = load_records(open_engine(db), "methods")
        stored = {(r["item_id"], r["question"]): r["value"] for r in records.ratings}
        for sent in first + rest:
            for question, value in sent["answers"].items():
                assert stored[(sent["item"], question)] == value
        assert len(stored) == 2 * screen["total"]
        assert records.raters[0]["participant"] == "prolific-123"
    finally:
        process.kill()
        process.wait(timeout=30)
