"""The web studio (`clipstyle serve`), started in-process on a free loopback port with the micro CLIP and
driven by gradio_client, then by headless Chromium. Tiny runs (a 64 x 48 photo, 64 px, 2-4 steps)."""
from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle_opt.imageio import load_image, resize, to_pil
from clipstyle_opt.studio.jobs import Job
from studio_server import MICRO_CLIP, ROOT, running_studio

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

STEPS = 4
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with running_studio(tmp_path_factory.mktemp("studio-out")) as (demo, url):
        yield demo, url


@pytest.fixture(scope="module")
def client(studio, tmp_path_factory):
    return Client(studio[1], verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut_small.png"
    to_pil(resize(load_image(ROOT / "examples" / "astronaut.png"), (48, 64))).save(path)
    return path


def call(client, photo, prompt="red stripes", steps=STEPS, seed=0, clip_model=MICRO_CLIP):
    return client.submit(handle_file(str(photo)), prompt, "preview", steps, 64, seed, clip_model,
                         api_name="/stylize")


def preference(stylizer, image) -> float:
    """How much more the micro CLIP sees "red stripes" than "green dots" in ``image``."""
    with torch.no_grad():
        embedding = stylizer.clip.encode_image(resize(image, (64, 64)))[0]
        return float(embedding @ stylizer.clip.encode_prompt("red stripes")
                     - embedding @ stylizer.clip.encode_prompt("green dots"))


@pytest.fixture(scope="module")
def reference(studio, small_photo):
    """The engine's own run with the API's settings (preview preset, 64 px, 4 steps, seed 0), on the studio's
    loaded encoders."""
    stylizer = studio[0].studio.engines.stylizer(MICRO_CLIP)
    from clipstyle_opt.config import PRESETS

    return stylizer, stylizer.stylize(str(small_photo), "red stripes", **{**PRESETS["preview"], "steps": STEPS,
                                                                              "size": 64, "seed": 0})


def test_named_endpoints_take_the_documented_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/stylize"]["parameters"]] == [
        "photo", "prompt", "preset", "steps", "size", "seed", "clip_model"]
    assert [p["parameter_name"] for p in endpoints["/apply"]["parameters"]] == ["unet", "photo"]


def test_stylize_streams_previews_then_the_image_stylize_gives(client, small_photo, reference, studio):
    """At least two previews, then the final PNG and its metadata. The PNG equals, exactly, the engine's image for
    the same settings and seed: the same code on the same CPU in the same process, with the same thread count,
    runs the same arithmetic in the same order; both are the same float tensor rounded to 8 bits once. And it
    moved toward the prompt: under the micro CLIP it leans further to "red stripes" (over "green dots") than the
    same run for "green dots" does."""
    job = call(client, small_photo)
    final_path, metadata = job.result(timeout=600)
    outputs = job.outputs()
    previews = [out for out in outputs[:-1] if isinstance(out[1], dict) and out[1].get("status") == "running"]
    assert len(previews) >= 2 and len(outputs) == len(previews) + 1
    assert [p[1]["step"] for p in previews] == sorted(p[1]["step"] for p in previews)
    assert all(Path(p[0]).exists() for p in previews)
    assert metadata["tool"] == "clipstyle_opt" and metadata["seed"] == 0 and metadata["config"]["steps"] == STEPS
    stylizer, expected = reference
    got = np.asarray(Image.open(final_path).convert("RGB"))
    assert np.array_equal(got, np.asarray(expected.image))
    assert Image.open(final_path).info.get("prompt") or Image.open(final_path).text  # the CLI's PNG chunks
    from clipstyle_opt.config import PRESETS

    other = stylizer.stylize(str(small_photo), "green dots", **{**PRESETS["preview"], "steps": STEPS, "size": 64})
    assert preference(stylizer, load_image(final_path)) > preference(stylizer, other.tensor)


def test_stop_then_continue_equals_the_uninterrupted_run(studio, small_photo, reference):
    """The page's Stop (GracefulStop.request, the Ctrl-C path) after step 2, then "Continue 2 steps": the image of
    the uninterrupted 4-step run, bit for bit."""
    app = studio[0].studio
    job = app.start("test-session", str(small_photo), [("red stripes", 1.0)], "preview", MICRO_CLIP,
                    {"steps": STEPS, "size": 64, "seed": 0})
    assert isinstance(job, Job)
    for progress in job.train():
        if progress.step == 2 and progress.result is None:
            job.stop()
    assert progress.status == "interrupted" and progress.step == 2
    assert job.last.extra == {"status": "interrupted", "steps_done": 2}
    *_, progress = job.train(more=2)
    assert progress.status == "done" and progress.step == STEPS
    assert torch.equal(job.last.tensor, reference[1].tensor)


def test_two_clients_at_once_the_second_queues_and_both_finish(studio, small_photo, tmp_path):
    first, second = (Client(studio[1], verbose=False, download_files=str(tmp_path / name)) for name in "ab")
    jobs = [call(first, small_photo, steps=2, seed=1), None]
    time.sleep(0.2)
    jobs[1] = call(second, small_photo, steps=2, seed=2)
    queued = False
    while not jobs[0].done():
        status = jobs[1].status()
        queued = queued or (status.code.name == "IN_QUEUE" and (status.rank or 0) >= 0 and not jobs[1].done())
        time.sleep(0.05)
    results = [job.result(timeout=600) for job in jobs]
    assert queued, "the second client never waited in the queue"
    assert [r[1]["seed"] for r in results] == [1, 2]


def _bomb(path: Path, side: int = 100_000) -> Path:
    """A PNG whose header says side x side pixels (a decompression bomb's header; the data is never reached)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind, message", [("text", "not an image"), ("tiny", "too small"),
                                           ("bomb", "too large")])
def test_bad_uploads_give_one_readable_line_and_the_server_goes_on(client, tmp_path, kind, message):
    path = tmp_path / "upload.png"
    if kind == "text":
        path.write_text("not a picture at all\n")
    elif kind == "tiny":
        Image.new("RGB", (1, 1)).save(path)
    else:
        _bomb(path)
    with pytest.raises(AppError) as caught:
        call(client, path).result(timeout=120)
    text = str(caught.value)
    assert text.startswith("error: ") and message in text and "\n" not in text and "Traceback" not in text
    assert str(path) not in text
    assert client.view_api(print_info=False, return_format="dict")["named_endpoints"]  # still answering


@pytest.mark.parametrize("name", ["/etc/passwd", str(ROOT / "tests" / "data" / "micro_siglip"),
                                  "local-dir:/tmp", "../../secret.pt"])
def test_a_model_outside_the_allowed_places_is_refused(client, small_photo, name):
    with pytest.raises(AppError, match="is not offered by this server"):
        call(client, small_photo, clip_model=name).result(timeout=120)


def test_apply_restyles_with_a_saved_unet_and_refuses_other_files(client, small_photo, tmp_path, reference):
    unet = tmp_path / "run.unet.pt"
    reference[1].save_unet(unet)
    image = client.predict(handle_file(str(unet)), handle_file(str(small_photo)), api_name="/apply")
    assert Image.open(image).size == (64, 48)
    evil = tmp_path / "evil.unet.pt"
    torch.save({"format": "clipstyle_opt.unet.model/1", "code": threading.Thread}, evil)  # not weights only
    with pytest.raises(AppError, match="error: not a clipstyle U-Net file"):
        client.predict(handle_file(str(evil)), handle_file(str(small_photo)), api_name="/apply")
