"""The motion dimensions, by VBench's protocols: temporal flickering (exact formula, scored on the
videos VBench's static filter keeps), dynamic degree and motion smoothness (proxies: OpenCV flow
and a flow-based interpolator instead of RAFT and AMT-S, `fastlight.evaluate.vbench.flow`).

Temporal flickering, as in VBench, is only defined on *static* videos (VBench's ``static_filter``
keeps the videos whose RAFT flow stays small; flicker is then the only thing left to measure).
``temporal_flickering(frames)`` therefore returns ``None`` for a video the filter rejects as moving;
the dimension's score is the mean over the static videos. Pass ``static_filter=False`` to score
every video (not VBench's protocol). The filter's flow is OpenCV's, not RAFT: with it the dimension
is a proxy, without it the exact formula (`dimensions.dimension_kind`).
"""
from __future__ import annotations

import cv2
import numpy as np

from fastlight.errors import InputError
from fastlight.evaluate.vbench.dimensions import need_frames
from fastlight.evaluate.vbench.flow import deblock, interpolate_midpoint, optical_flow, top_mean_magnitude
from fastlight.evaluate.vbench.frames import as_video


def is_static(frames: np.ndarray) -> bool:
    """VBench's static filter (vbench static_filter), OpenCV flow instead of RAFT.

    Pairs: every consecutive pair, then (first, last) and (last, first). Per pair the mean
    of the top-2% flow magnitudes; thres = 3 * min(H, W) / 256, count_num = round(2 N / 16).
    Static if no more than count_num consecutive pairs exceed thres and both first<->last
    pairs stay <= thres * count_num * 2.
    """
    frames = as_video(frames)
    need_frames(frames, "temporal_flickering")
    h, w = frames.shape[1:3]
    thres = 3.0 * (min(h, w) / 256.0)
    count_num = round(2 * (len(frames) / 16.0))
    small, fac = deblock(frames)
    pairs = list(zip(small[:-1], small[1:])) + [(small[0], small[-1]), (small[-1], small[0])]
    scores = [fac * top_mean_magnitude(optical_flow(a, b), 0.02) for a, b in pairs]
    count = 0
    for s in scores[:-2]:
        if s > thres:
            count += 1
        if count > count_num:
            return False
    return all(s <= thres * count_num * 2 for s in scores[-2:])


def _flicker_formula(frames: np.ndarray) -> float:
    f = frames.astype(np.float32)
    mae = np.abs(f[1:] - f[:-1]).reshape(len(f) - 1, -1).mean(axis=1)
    return float((255.0 - mae.mean()) / 255.0)


def temporal_flickering(frames: np.ndarray, static_filter: bool = True) -> float | None:
    """VBench temporal flickering: (255 - mean_t mean|x_t+1 - x_t|) / 255, all frames.

    VBench only scores static videos (its static filter runs first), so a video the filter
    rejects as moving gives None. static_filter=False scores any video.
    """
    frames = as_video(frames)
    need_frames(frames, "temporal_flickering")
    if static_filter and not is_static(frames):
        return None
    return _flicker_formula(frames)


def dynamic_degree_details(frames: np.ndarray, fps: float = 8.0) -> dict:
    """Everything VBench's DynamicDegree computes: sampled pairs' scores, thresholds, verdict.

    Every round(fps/8)-th frame; per consecutive pair the mean of the top-5% flow magnitudes; the
    video is dynamic when >= round(4 N/16) pairs exceed 6 min(H, W)/256 max(1, 8/fps).
    """
    frames = as_video(frames)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise InputError(f"dynamic_degree: fps {fps!r} is not a positive number; give the video's frame rate")
    fps = float(fps)
    interval = max(1, round(fps / 8))
    sampled = frames[::interval]
    need_frames(sampled, "dynamic_degree")
    h, w = sampled.shape[1:3]
    factor = max(1.0, 8.0 / fps)
    thres = factor * 6.0 * (min(h, w) / 256.0)
    count_num = round(4 * (len(sampled) / 16.0))
    small, fac = deblock(sampled)
    scores = [fac * top_mean_magnitude(optical_flow(a, b), 0.05) for a, b in zip(small[:-1], small[1:])]
    count, dynamic = 0, False
    for s in scores:  # VBench's check_move
        if s > thres:
            count += 1
        if count >= count_num:
            dynamic = True
            break
    return {"dynamic": dynamic, "scores": scores, "thres": thres, "count_num": count_num,
            "interval": interval, "num_sampled": len(sampled)}


def dynamic_degree(frames: np.ndarray, fps: float = 8.0) -> bool:
    """VBench dynamic degree of one video: True if it moves enough (protocol: dynamic_degree_details)."""
    return bool(dynamic_degree_details(frames, fps)["dynamic"])


def motion_smoothness(frames: np.ndarray) -> float:
    """VBench motion smoothness: interpolate odd frames from even ones, (255 - MAE) / 255."""
    frames = as_video(frames)
    need_frames(frames, "motion_smoothness")
    small, fac = deblock(frames)  # nearest-upscaled video: interpolate its own pixels
    even = small[0::2]
    interp = [interpolate_midpoint(a, b) for a, b in zip(even[:-1], even[1:])]
    if fac > 1:
        interp = [np.repeat(np.repeat(f, fac, axis=0), fac, axis=1) for f in interp]
    real = frames[1::2][:len(interp)]
    diffs = [float(np.mean(cv2.absdiff(a, b))) for a, b in zip(real, interp)]
    return float((255.0 - np.mean(diffs)) / 255.0)

