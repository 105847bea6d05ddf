"""The studio's mask painted in the image editor or uploaded, its regions, the focus relevance map, the original
name in the sidecar, and video in the Apply tab. The page's own handlers are called with the values the page
sends (`StylizeTab.input_values`), on the app built with the micro CLIP (no server needed), and compared with
the engine's runs given the same files as the command line's ``--mask`` and ``--region`` (tiny runs: a 64 x 48
photo, 64 px, 2 steps)."""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipstyle_opt.config import PRESETS
from clipstyle_opt.errors import ClipstyleError, ConfigError, ImageReadError
from clipstyle_opt.imageio import load_image, resize, to_pil
from studio_server import MICRO_CLIP, ROOT

pytest.importorskip("gradio")
from clipstyle_opt.studio.masks import mask_file, painted_alpha  # noqa: E402
from clipstyle_opt.studio.security import UploadLimits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")
STEPS, SIZE, H, W = 2, 64, 48, 64
RUN = {**PRESETS["preview"], "steps": STEPS, "size": SIZE, "seed": 0}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from clipstyle_opt.studio.app import build_app
    from clipstyle_opt.studio.jobs import StudioOptions

    temp = tmp_path_factory.mktemp("gradio-temp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(temp))  # as `launch` sets it: painted masks go there
        yield build_app(StudioOptions([MICRO_CLIP], device="cpu", output_dir=tmp_path_factory.mktemp("out"),
                                      preview_every=0))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut_small.png"
    to_pil(resize(load_image(ROOT / "examples" / "astronaut.png"), (H, W))).save(path)
    return path


@pytest.fixture(scope="module")
def stylizer(demo):
    return demo.studio.engines.stylizer(MICRO_CLIP)


def right_half_layer() -> np.ndarray:
    """A brush layer as the editor sends it (RGBA, the canvas's size): white, opaque on the right half."""
    layer = np.zeros((H, W, 4), np.uint8)
    layer[:, W // 2:] = 255
    return layer


def run_page(demo, photo, first_only: bool = False, **given):
    """Press Stylize with ``given`` (component name -> value) on the page; every update it streams (only the first,
    the page closing then, with ``first_only``)."""
    tab = demo.stylize_tab
    named = {"photo": tab.photo, "prompt": tab.prompt_rows[0], "steps": tab.main["steps"], "size": tab.main["size"],
             "seed": tab.main["seed"], "mask_paint": tab.mask.editor, "mask_upload": tab.mask.upload,
             "focus": tab.focus, "region1_paint": tab.regions[0][0].editor,
             "region1_upload": tab.regions[0][0].upload, "region1_prompt": tab.regions[0][1]}
    values = {tab.photo: str(photo), tab.main["steps"]: STEPS, tab.main["size"]: SIZE, tab.main["seed"]: 0}
    values.update({named[key]: value for key, value in given.items()})
    updates = tab.on_stylize(None, *tab.input_values(values))
    if first_only:
        first = next(updates)
        updates.close()
        return [first]
    return list(updates)


def test_a_painted_layer_becomes_the_mask_and_nothing_painted_is_no_mask(tmp_path):
    layer = right_half_layer()
    layer[:4, :4] = (255, 0, 0, 128)  # any colour counts, by its alpha
    second = np.zeros((H, W, 4), np.uint8)
    second[-4:, :4, 3] = 255  # a second layer adds to the first
    alpha = painted_alpha({"background": None, "layers": [layer, second], "composite": None})
    expected = np.zeros((H, W), np.uint8)
    expected[:, W // 2:] = 255
    expected[:4, :4] = 128
    expected[-4:, :4] = 255
    assert np.array_equal(alpha, expected)
    assert painted_alpha({"background": None, "layers": [np.zeros((H, W, 4), np.uint8)], "composite": None}) is None
    assert mask_file(None, None, "mask") is None
    painted = mask_file({"layers": [right_half_layer()]}, None, "mask", folder=tmp_path)
    assert np.array_equal(np.asarray(Image.open(painted)), expected * 0 + (right_half_layer()[..., 3]))
    black = tmp_path / "black.png"
    Image.new("L", (W, H), 0).save(black)
    with pytest.raises(ConfigError, match="^mask is all black") as caught:  # the command line's rule and words
        mask_file(None, str(black), "mask")
    assert str(black) not in str(caught.value)
    with pytest.raises(ConfigError, match="paint it or upload it, not both"):
        mask_file({"layers": [right_half_layer()]}, str(black), "mask")
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    with pytest.raises(ImageReadError, match="not an image"):  # a layer file goes through the upload checks
        painted_alpha({"layers": [str(notes)]}, UploadLimits())


def test_the_painted_mask_reaches_the_engine_as_the_mask_flag_does(demo, photo, stylizer, tmp_path):
    """Painted over the right half: the left half stays the photo's, pixel for pixel (the result is composited
    over the photo with the mask), and the image is the engine's for the same mask given as a file, bit for bit.
    The sidecar records the upload's own name, not the server's copy."""
    updates = run_page(demo, photo, prompt="red stripes",
                       mask_paint={"background": str(photo), "layers": [right_half_layer()],
                                   "composite": str(photo)})
    tab = demo.stylize_tab
    final = updates[-1]
    got = np.asarray(Image.open(final[tab.shown]).convert("RGB"))
    original = np.asarray(Image.open(photo).convert("RGB"))
    assert np.array_equal(got[:, :W // 2], original[:, :W // 2])
    assert np.abs(got[:, W // 2:].astype(int) - original[:, W // 2:]).mean() > 1
    mask = tmp_path / "mask.png"
    Image.fromarray(right_half_layer()[..., 3]).save(mask)
    expected = stylizer.stylize(str(photo), "red stripes", mask=str(mask), **RUN)
    assert np.array_equal(got, np.asarray(expected.image))
    metadata = final[tab.meta]
    assert metadata["content"] == photo.name and metadata["mask"]["sha256"]


def test_an_uploaded_mask_is_used_as_given(demo, photo, stylizer, tmp_path):
    mask = tmp_path / "left.png"
    Image.fromarray(np.where(np.arange(W) < W // 2, 255, 0).astype(np.uint8)[None].repeat(H, 0)).save(mask)
    final = run_page(demo, photo, prompt="red stripes", mask_upload=str(mask))[-1]
    expected = stylizer.stylize(str(photo), "red stripes", mask=str(mask), **RUN)
    assert np.array_equal(np.asarray(Image.open(final[demo.stylize_tab.shown]).convert("RGB")),
                          np.asarray(expected.image))
    assert final[demo.stylize_tab.meta]["mask"]["path"] == str(mask)


def test_a_region_row_reaches_the_engine_as_the_region_flag_does(demo, photo, stylizer, tmp_path):
    """A region (its mask painted, its prompt typed) and no prompt above: the run of ``--region MASK PROMPT``."""
    final = run_page(demo, photo, region1_paint={"background": str(photo), "layers": [right_half_layer()],
                                                 "composite": str(photo)}, region1_prompt="red stripes")[-1]
    job = demo.studio.sessions.get("anonymous")
    assert [t.text for region in job.last.guidance.regions for t in region.texts] == ["red stripes"]
    mask = tmp_path / "region.png"
    Image.fromarray(right_half_layer()[..., 3]).save(mask)
    expected = stylizer.stylize(str(photo), [], regions=[(str(mask), "red stripes")], **RUN)
    assert torch.equal(job.last.tensor, expected.tensor)
    assert np.array_equal(np.asarray(Image.open(final[demo.stylize_tab.shown]).convert("RGB")),
                          np.asarray(expected.image))


@pytest.mark.parametrize("given, message", [
    ({"region1_prompt": "red stripes"}, "region 1: give both a mask and a prompt"),
    ({"prompt": "red stripes", "region1_upload": "MASK", "region1_prompt": "fire"}, "clear the prompts"),
    ({}, "give a PROMPT"),
])
def test_regions_misused_give_one_line(demo, photo, tmp_path, given, message):
    mask = tmp_path / "white.png"
    Image.new("L", (W, H), 255).save(mask)
    given = {key: str(mask) if value == "MASK" else value for key, value in given.items()}
    with pytest.raises(ClipstyleError, match=message):
        run_page(demo, photo, **given)


def test_the_focus_relevance_map_shows_with_a_focus_and_not_without(demo, photo):
    tab = demo.stylize_tab
    first = run_page(demo, photo, True, prompt="red stripes", focus="red stripes")[0]
    shown = first[tab.focus_map]
    assert shown.visible is True and shown.value is not None
    job = demo.studio.sessions.get("anonymous")
    relevance = job.focus_map()
    assert relevance.size == (job.run.focus_map.shape[-1], job.run.focus_map.shape[-2])
    assert np.asarray(relevance).std() > 0  # a map, not a flat image
    first = run_page(demo, photo, True, prompt="red stripes")[0]
    assert first[tab.focus_map].visible is False and demo.studio.sessions.get("anonymous").focus_map() is None


def make_video(path: Path, frames: int = 6) -> Path:
    """A tiny H.264 clip: ``frames`` frames of 64 x 48 px at 12 fps, a pan over the astronaut."""
    av = pytest.importorskip("av")
    picture = (resize(load_image(ROOT / "examples" / "astronaut.png"), (H * 2, W * 2))[0].permute(1, 2, 0)
               .numpy() * 255).round().astype(np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[10:10 + H, 2 * index:2 * index + W]),
                                               format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def unet_file(stylizer, photo, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("unet") / "run.unet.pt"
    stylizer.stylize(str(photo), "red stripes", **RUN).save_unet(path)
    return path


def test_the_apply_tab_restyles_a_video(demo, unet_file, tmp_path):
    from clipstyle_opt.unet.video import frames_rgb, probe

    video = make_video(tmp_path / "clip.mp4")
    out = Path(demo.apply_tab.on_video(str(unet_file), None, str(video)))
    assert out.suffix == ".mp4" and out.parent == demo.studio.options.output_dir / "applied"
    info = probe(out)
    assert (info.width, info.height, info.frames) == (W, H, 6) and info.rate == Fraction(12)
    source, styled = next(frames_rgb(video)), next(frames_rgb(out))
    assert np.abs(source.astype(int) - styled).mean() > 1  # restyled, not copied


def test_video_uploads_are_bounded_and_need_pyav(demo, unet_file, tmp_path, monkeypatch):
    from clipstyle_opt.studio.videos import check_video_upload

    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(ImageReadError, match="not a video") as caught:
        check_video_upload(fake, UploadLimits())
    assert str(fake) not in str(caught.value)
    video = make_video(tmp_path / "clip.mp4", frames=2)
    with pytest.raises(ImageReadError, match="video too large: .* bytes"):
        check_video_upload(video, UploadLimits(max_bytes=100))
    monkeypatch.setenv("CLIPSTYLE_MAX_PIXELS", str(W * H - 1))
    with pytest.raises(ImageReadError, match="its frames are 64x48"):
        check_video_upload(video, UploadLimits())
    monkeypatch.delenv("CLIPSTYLE_MAX_PIXELS")
    with pytest.raises(ConfigError, match="must be one of"):
        check_video_upload(tmp_path / "clip.gif", UploadLimits())
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(ClipstyleError, match=r"^video needs PyAV, which is not installed: pip install"):
        demo.apply_tab.on_video(str(unet_file), None, str(video))


def test_gradio_hands_the_page_s_handlers_their_session(demo):
    """Gradio fills a gr.Request only among the positional parameters before ``*values``: each handler that acts
    on a session's run must receive it, or every page would share the "anonymous" run (and Stop would miss it)."""
    from gradio.helpers import special_args

    handlers = {getattr(f.fn, "__name__", ""): f.fn for f in demo.fns.values()}
    marker = object()
    for name in ("on_stylize", "on_continue", "on_stop"):
        inputs, *_ = special_args(handlers[name], ["a", "b"], request=marker)
        assert marker in inputs, name
