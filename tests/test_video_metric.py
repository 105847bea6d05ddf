"""The flow-warped temporal error (Lai et al., ECCV 2018) and `clipstyle eval` on video files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipstyle_opt.evaluate.video import pair_error, warp_error, warped_errors
from clipstyle_opt.unet.flow import dis_flow, farneback_flow, occlusion_mask, warp_back

pytest.importorskip("cv2")

SHIFT, HEIGHT, WIDTH, FRAMES = 3, 48, 64, 5
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def texture(height: int, width: int) -> np.ndarray:
    """A smooth, everywhere-textured uint8 image in 50..205 (no clipping when 10 levels are added)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [np.sin(x / 5.0 + c) * np.cos(y / 7.0 - c) + 0.5 * np.sin((x + 2 * y) / 11.0 + c) for c in range(3)]
    return (127.5 + 52 * np.stack(channels, axis=-1)).round().astype(np.uint8)


def panned(frames: int = FRAMES) -> list[np.ndarray]:
    """Frame t shows the texture moved left by SHIFT * t px: pixel x of frame t is pixel x + SHIFT of frame t-1."""
    big = texture(HEIGHT, WIDTH + SHIFT * frames)
    return [np.ascontiguousarray(big[:, SHIFT * t:SHIFT * t + WIDTH]) for t in range(frames)]


def exact_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The true flow of `panned` between consecutive frames a -> b (b later: content moves left; else right)."""
    flow = np.zeros((*a.shape[:2], 2), np.float32)
    later = np.array_equal(a[:, SHIFT:], b[:, :-SHIFT])
    flow[..., 0] = -SHIFT if later else SHIFT
    return flow


def test_a_static_clip_has_no_warped_error():
    frame = texture(HEIGHT, WIDTH)
    assert warp_error([frame] * 4) == 0.0
    assert warp_error([frame] * 4, flow=exact_flow) == 0.0


def test_the_error_of_a_shifted_clip_matches_the_hand_computed_value():
    inputs = panned()
    assert warp_error(inputs, flow=exact_flow) == 0.0  # the input moves exactly with its flow
    # the output: the input with 10 levels added on every other frame -> each pair differs by exactly 10/255
    outputs = [frame + np.uint8(10 * (t % 2)) for t, frame in enumerate(inputs)]
    errors = warped_errors(outputs, inputs, flow=exact_flow)
    assert len(errors) == FRAMES - 1
    for error in errors:  # float32 arithmetic on values <= 1: a few units of its epsilon
        assert error == pytest.approx(10 / 255, abs=8 * FLOAT32_EPS)
    # the SHIFT right-most columns come from outside the previous frame: masked out, not counted
    valid = occlusion_mask(exact_flow(inputs[1], inputs[0]), exact_flow(inputs[0], inputs[1]))
    assert valid[:, :WIDTH - SHIFT].all() and not valid[:, WIDTH - SHIFT:].any()


# Not float tolerances: how closely each estimator resolves a 3 px pan of a 64 x 48 texture (Farneback's
# 15 px window sees little of so small a frame). Each is far from the 3 px an estimator that failed would miss.
@pytest.mark.parametrize("flow, within", [(dis_flow, 0.1), (farneback_flow, 0.3)])
def test_the_flows_recover_an_integer_pan(flow, within):
    inputs = panned(2)
    backward = flow(inputs[1], inputs[0])
    inner = backward[8:-8, 8:-8 - SHIFT]
    assert np.median(inner[..., 0]) == pytest.approx(SHIFT, abs=within)
    assert np.median(np.abs(inner[..., 1])) < within
    # warped with the estimated flow, the pan's own error is well below the error of not warping at all
    unwarped = float(np.abs(inputs[1].astype(np.float32) - inputs[0]).mean() / 255)
    assert warp_error(inputs, flow=flow) < 0.5 * unwarped


def test_pair_error_warps_the_previous_frame_backwards():
    previous = np.zeros((4, 6, 3), np.float32)
    previous[:, 3] = 1.0  # a bright column at x = 3
    flow = np.zeros((4, 6, 2), np.float32)
    flow[..., 0] = 1.0  # pixel x of this frame was at x + 1 in the previous one
    assert np.array_equal(warp_back(previous, flow)[:, 2], np.ones((4, 3), np.float32))
    current = warp_back(previous, flow)
    assert pair_error(previous, current, flow, np.ones((4, 6), bool)) == 0.0


def test_eval_scores_a_video_against_its_input(tmp_path):
    av = pytest.importorskip("av")
    from fractions import Fraction

    from click.testing import CliRunner

    from clipstyle_opt.cli import cli

    def write(path: Path, frames: list[np.ndarray]) -> Path:
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=12)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            stream.options = {"crf": "0"}
            for index, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, 12)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        return path

    inputs = panned()
    source = write(tmp_path / "in.mp4", inputs)
    output = write(tmp_path / "out.mp4", [f + np.uint8(30 * (t % 2)) for t, f in enumerate(inputs)])
    micro = Path(__file__).resolve().parent / "data" / "micro_clip.pt"
    result = CliRunner().invoke(cli, ["eval", str(output), "--content", str(source), "--prompt", "red stripes",
                                      "--clip-model", str(micro), "--metrics", "patch_clip_score,lpips_vgg",
                                      "--size", "64", "--json", str(tmp_path / "scores.json"), "-q"])
    assert result.exit_code == 0, result.output
    import json

    (row,) = json.loads((tmp_path / "scores.json").read_text())["results"]
    assert row["frames"] == FRAMES
    assert row["warp_error_input"] < row["warp_error"]  # the flicker we added shows
    assert row["warp_error"] > 0.5 * 30 / 255  # most of the 30 levels (chroma subsampling blurs a little)
    assert {"patch_clip_score", "lpips_vgg"} <= set(row)
