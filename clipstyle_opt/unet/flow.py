"""Optical flow between video frames, backward warping and occlusion masks (OpenCV, in the video extra).

Used twice: by the flow-guided temporal blending of `clipstyle_opt.unet.temporal` while
rendering, and by the flow-warped temporal error of `clipstyle_opt.evaluate.video`. Both
take the flow of the *input* frames, never of the stylized ones.

Conventions: frames are H x W x 3 uint8 RGB or H x W x 3 float32 arrays; a flow is an
H x W x 2 float32 array of (dx, dy) in px such that pixel (x, y) of frame ``a`` moves to
(x + dx, y + dy) in frame ``b``.

We use OpenCV's DIS flow (Kroeger et al., ECCV 2016) rather than the FlowNet2 of Lai et al.:
it needs no learned weights, runs on the CPU at video rates and is in a well-kept library.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import ClipstyleError

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""flow(a, b): the H x W x 2 flow from frame ``a`` to frame ``b`` (uint8 RGB frames of one size)."""


def import_cv2() -> Any:
    """The ``cv2`` module, or a one-line `ClipstyleError` saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise ClipstyleError("optical flow needs OpenCV, which is not installed: "
                             "pip install 'clipstyle_opt[video]'") from None
    return cv2


def _gray(frame: np.ndarray) -> np.ndarray:
    cv2 = import_cv2()
    if frame.dtype != np.uint8:
        frame = np.clip(frame * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow (OpenCV's ``MEDIUM`` preset, on gray levels) from frame ``a`` to frame ``b``; H x W x 2 px."""
    cv2 = import_cv2()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray(a), _gray(b), None)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Farneback optical flow (OpenCV, 3 levels, 15 px window) from frame ``a`` to frame ``b``; H x W x 2 px.

    A second, independent flow: a metric computed with it does not share the errors of the DIS flow
    the blending used (`benchmarks/bench_video.py` reports both)."""
    cv2 = import_cv2()
    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, 0.5, 3, 15, 3, 5, 1.2, 0)


def warp_back(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out[y, x] = image[y + flow[y, x, 1], x + flow[y, x, 0]]`` (bilinear, float32).

    With ``flow`` the flow from frame t to frame t-1 and ``image`` frame t-1, this brings frame
    t-1 onto frame t's pixel grid. Samples outside the image take the nearest edge pixel; the
    occlusion mask (`occlusion_mask`) marks them invalid.
    """
    cv2 = import_cv2()
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels of frame t whose motion is trusted: H x W bool, True = valid.

    backward: flow t -> t-1; forward: flow t-1 -> t. A pixel is valid when it lands inside frame
    t-1 and the forward-backward round trip comes back (Sundaram et al., ECCV 2010, as Ruder et
    al. and Lai et al. use it): ``|w_b + w_f(x + w_b)|^2 <= 0.01 (|w_b|^2 + |w_f(x + w_b)|^2) + 0.5``.
    """
    height, width = backward.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    target_x, target_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
    inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    forward_there = warp_back(forward, backward)
    round_trip = np.square(backward + forward_there).sum(axis=-1)
    bound = 0.01 * (np.square(backward).sum(axis=-1) + np.square(forward_there).sum(axis=-1)) + 0.5
    return inside & (round_trip <= bound)


__all__ = ["FlowFn", "dis_flow", "farneback_flow", "import_cv2", "occlusion_mask", "warp_back"]
