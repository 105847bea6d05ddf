"""Load on a served study: N simulated raters (default 50) submitting at once against the SQLite default.

Builds a mos study from 12 small outputs (3 methods x 2 photos x 2 prompts, every rater rates all of
them plus the 2 attention checks), serves it with `clipstyle study serve` in a subprocess on a free
loopback port, then starts every rater at the same moment (asyncio + httpx, at most two connections per
rater). Every 5th submit is sent twice at once, as a browser retry would, and a request that meets a
closed connection is sent again (counted), as the page does. Reports the ratings lost or
duplicated (both must be 0: compared row by row with what was sent) and the median and p95 latency of
a submit (POST .../ratings), with the CPU named and the load average at the start (a shared machine
makes the latencies longer; lost/duplicated do not depend on it).

    python benchmarks/bench_study_load.py [--raters 50] [--keep DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from clipstyle_opt.imageio import save_image  # noqa: E402
from clipstyle_opt.study.create import create_study  # noqa: E402
from clipstyle_opt.study.records import load_records  # noqa: E402
from clipstyle_opt.study.schema import open_engine  # noqa: E402
from clipstyle_opt.devices import cpu_model  # noqa: E402
from clipstyle_opt.study.server import free_port  # noqa: E402


def build_outputs(root: Path) -> list[Path]:
    photos = root / "photos"
    photos.mkdir(parents=True)
    folders = []
    for name in ("chelsea", "coffee"):
        with Image.open(ROOT / "examples" / f"{name}.png") as photo:
            photo.convert("RGB").resize((96, 64)).save(photos / f"{name}.png")
    for m, method in enumerate(("adain", "ours", "baseline")):
        for name in ("chelsea", "coffee"):
            for q, prompt in enumerate(("fire", "water")):
                image = Image.open(photos / f"{name}.png").convert("RGB")
                image = Image.eval(image, lambda v, s=m * 40 + q * 9: min(255, v + s))
                save_image(image, root / method / f"{name}_{q}.png",
                           {"prompt": prompt, "content": str(photos / f"{name}.png"), "method": method})
        folders.append(root / method)
    return folders


RETRIES = Counter()


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs) -> httpx.Response:
    """One request, retried on a connection error (a keep-alive connection closed under it), as the page
    does: every request of the API is idempotent. Retries are counted and reported."""
    for attempt in range(4):
        try:
            return await client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            RETRIES[type(exc).__name__] += 1
            if attempt == 3:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def rater(client: httpx.AsyncClient, index: int, start: asyncio.Event, sent: list, latencies: list) -> None:
    joined = await call(client, "POST", "/api/studies/load/raters", json={"participant": f"bench-{index}"})
    token = joined.json()["rater"]
    await start.wait()
    screens = 0
    while True:
        screen = (await call(client, "GET", "/api/studies/load/next", params={"rater": token})).json()
        if screen.get("done"):
            return
        answers = {"style": 1 + (index + screens) % 5, "content": 1 + (index * 3 + screens) % 5}
        if screen["images"][0]["url"] == screen["images"][1]["url"]:
            answers = {"style": 1, "content": 5}
        body = {"rater": token, "item": screen["item"], "answers": answers}
        copies = 2 if screens % 5 == 4 else 1

        async def post() -> None:
            began = time.perf_counter()
            response = await call(client, "POST", "/api/studies/load/ratings", json=body)
            latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                raise RuntimeError(f"submit refused: {response.status_code} {response.text}")
        await asyncio.gather(*(post() for _ in range(copies)))
        sent.append((token, screen["item"], answers))
        screens += 1


async def load(url: str, raters: int) -> tuple[list, list, float]:
    sent: list = []
    latencies: list = []
    start = asyncio.Event()
    limits = httpx.Limits(max_connections=2 * raters, max_keepalive_connections=2 * raters)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(rater(client, i, start, sent, latencies)) for i in range(raters)]
        await asyncio.sleep(1.0)  # every rater has joined and waits
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        return sent, latencies, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--keep", default=None, help="keep the study database in this folder")
    args = parser.parse_args()
    if not 1 <= args.raters <= 200:
        parser.error("--raters must be in 1..200 (a loopback load test, bounded)")
    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    server = None
    try:
        db = str(work / "study.sqlite")
        made = create_study(db, "load", build_outputs(work / "outs"), per_item=args.raters, per_rater=12, seed=0)
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        server = subprocess.Popen([sys.executable, "-m", "clipstyle_opt.cli", "study", "serve", "--db", db,
                                   "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                httpx.get(url + "/", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the study server did not start")
                time.sleep(0.3)
        load_avg = os.getloadavg()[0]
        sent, latencies, wall = asyncio.run(load(url, args.raters))
        records = load_records(open_engine(db), "load")
        tokens = {r["id"]: r["token"] for r in records.raters}
        stored = [(tokens[r["rater_id"]], r["item_id"], r["question"], r["value"]) for r in records.ratings]
        expected = {(token, item, q, v) for token, item, answers in sent for q, v in answers.items()}
        lost = len(expected - set(stored))
        duplicated = len(stored) - len(set((t, i, q) for t, i, q, _ in stored))
        unexpected = len(set(stored) - expected)
        ms = sorted(1000 * x for x in latencies)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores), load average at start {load_avg:.1f}")
        print(f"study: {made.items} items, {args.raters} raters x {len(sent) // args.raters} screens "
              "(12 items + a repeat + a control), every 5th submit sent twice at once")
        print(f"ratings expected {len(expected)}, stored {len(stored)}: lost {lost}, duplicated {duplicated}, "
              f"unexpected {unexpected}")
        print(f"submits {len(ms)}: median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ms[-1]:.1f} ms; "
              f"{len(sent) / wall:.0f} screens/s over {wall:.1f} s")
        print(f"connection errors retried: {dict(RETRIES) or 0}")
        if lost or duplicated or unexpected:
            raise SystemExit("FAILED: ratings lost or duplicated")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(work / "study.sqlite", Path(args.keep) / "study.sqlite")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
