"""Motion magnitude of a video: the mean dense optical-flow magnitude between consecutive frames.

    m = motion_magnitude(frames)        # (F, H, W, 3) uint8 -> pixels per frame

OpenCV Farneback flow on the grey frames at their own resolution (no upscaling, no filtering:
unlike `vbench.flow.optical_flow`, which cleans the flow for VBench's thresholds, this is the raw
amount of apparent motion), |flow| averaged over pixels, then over the F - 1 consecutive pairs.
A still video (every frame the same) gives exactly 0. Distilled few-step students are widely
reported to move less than their teachers; the student/teacher ratio of this number on the same
prompts and noise (`fastlight.evaluate.real`) makes that visible.
"""
from __future__ import annotations

import cv2
import numpy as np

from fastlight.errors import DataError
from fastlight.evaluate.vbench.frames import as_video, gray

# Farneback's parameters: pyramid scale, levels, window, iterations, poly_n, poly_sigma
PYR_SCALE, WINDOW, ITERATIONS, POLY_N, POLY_SIGMA = 0.5, 9, 3, 5, 1.1


def _levels(h: int, w: int) -> int:
    """Pyramid levels that keep the coarsest level >= 16 px (small frames get fewer)."""
    levels, side = 0, min(h, w)
    while side * PYR_SCALE >= 16 and levels < 4:
        side *= PYR_SCALE
        levels += 1
    return levels + 1


def pair_magnitude(frame0: np.ndarray, frame1: np.ndarray) -> float:
    """Mean Farneback flow magnitude (pixels) from frame0 to frame1, both (H, W, 3) uint8 RGB."""
    g0, g1 = gray(frame0), gray(frame1)
    if np.array_equal(g0, g1):
        return 0.0
    flow = cv2.calcOpticalFlowFarneback(g0, g1, None, PYR_SCALE, _levels(*g0.shape), WINDOW, ITERATIONS, POLY_N,
                                        POLY_SIGMA, 0)
    return float(np.linalg.norm(flow, axis=-1).mean())


def motion_magnitude(frames) -> float:
    """Mean optical-flow magnitude between consecutive frames, pixels per frame; (F, H, W, 3), F >= 2."""
    video = as_video(frames)
    if len(video) < 2:
        raise DataError(f"motion magnitude needs >= 2 frames, the video has {len(video)}")
    return float(np.mean([pair_magnitude(a, b) for a, b in zip(video[:-1], video[1:])]))
