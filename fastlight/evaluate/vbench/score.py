"""`score_videos`: many videos on many VBench-style dimensions, aggregated as VBench does."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm import tqdm

from fastlight.errors import DataError, InputError
from fastlight.evaluate.vbench.consistency import (background_features, consistency_sum, i2v_background,
                                                   i2v_subject, subject_features)
from fastlight.evaluate.vbench.dimensions import DIMENSIONS, check_dims, dimension_kind
from fastlight.evaluate.vbench.frames import as_video
from fastlight.evaluate.vbench.motion import dynamic_degree, motion_smoothness, temporal_flickering
from fastlight.evaluate.vbench.quality import aesthetic_quality, imaging_quality

# per-video value of each dimension from (frames, fps, conditioning image, static filter on);
# consistency is below
_PER_VIDEO = {
    "temporal_flickering": lambda v, fps, image, sf: temporal_flickering(v, static_filter=sf),
    "dynamic_degree": lambda v, fps, image, sf: dynamic_degree(v, fps),
    "motion_smoothness": lambda v, fps, image, sf: motion_smoothness(v),
    "i2v_subject": lambda v, fps, image, sf: i2v_subject(v, image),
    "i2v_background": lambda v, fps, image, sf: i2v_background(v, image),
    "imaging_quality": lambda v, fps, image, sf: imaging_quality(v),
    "aesthetic_quality": lambda v, fps, image, sf: aesthetic_quality(v),
}
# VBench weights these by frame pairs over all videos, so each video keeps its (sum, pairs)
# looked up at call time, so that tests/evaluate/test_vbench_labels.py sees which stand-ins run
_CONSISTENCY_FEATURES = {"subject_consistency": lambda f: subject_features(f),
                         "background_consistency": lambda f: background_features(f)}


def _fps_list(fps: float | Sequence[float], n: int, names: list[str]) -> list[float]:
    """One positive fps per video; no default is assumed for a missing one."""
    out = [fps] * n if isinstance(fps, (int, float)) or fps is None else list(fps)
    if len(out) != n:
        raise InputError(f"{n} video(s) but {len(out)} fps values")
    for f, name in zip(out, names):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not f > 0:
            raise InputError(f"{name}: fps {f!r} is not a positive number; give each video's frame rate")
    return [float(f) for f in out]


def _check_lengths(videos: list[np.ndarray], names: list[str], dims: list[str], fps_list: list[float]) -> None:
    """Fail before the slow part, naming the video, when one is too short for a dimension."""
    for v, name, fps in zip(videos, names, fps_list):
        for d in dims:
            have = len(v[::max(1, round(fps / 8))]) if d == "dynamic_degree" else len(v)
            if have < DIMENSIONS[d]["min_frames"]:
                extra = f" after ~8 fps sampling of {len(v)}" if d == "dynamic_degree" else ""
                raise DataError(f"{name}: {d} needs >= {DIMENSIONS[d]['min_frames']} frame(s), it has {have}{extra}")


def _aggregate(dim: str, values: list, pair_sums: list[tuple[float, int]], n: int, static_filter: bool) -> dict:
    entry = {"score": None, "kind": dimension_kind(dim, static_filter), "per_video": values, "num_videos": n}
    if dim in _CONSISTENCY_FEATURES and pair_sums:
        entry["score"] = sum(t for t, _ in pair_sums) / sum(c for _, c in pair_sums)
    elif dim == "dynamic_degree" and values:
        entry["score"] = float(np.mean([float(b) for b in values]))
    else:
        scored = [float(x) for x in values if x is not None]
        entry["score"] = float(np.mean(scored)) if scored else None
        if dim == "temporal_flickering":
            entry["num_scored"] = len(scored)
            entry["static_filter"] = bool(static_filter)
    if entry["score"] is not None:
        entry["score"] = float(min(1.0, max(0.0, entry["score"])))
    return entry


def score_videos(videos: list[np.ndarray], images: list[np.ndarray] | None = None, fps: float | Sequence[float] = 8.0,
                 dims=None, progress: bool = False, names: list[str] | None = None,
                 static_filter: bool = True) -> dict:
    """Score a list of (F, H, W, 3) uint8 RGB videos on VBench-style dimensions.

    Returns {dim: {"score": float | None, "kind", "per_video": [...], "num_videos"}}; the
    score is the mean over videos in [0, 1] (dynamic degree: the fraction of dynamic
    videos; temporal flickering: mean over the static videos, "num_scored" of them, or over
    every video with static_filter=False; subject/background consistency: VBench's
    frame-pair-weighted mean, equal to the mean over videos when they have the same length).
    kind = `dimensions.dimension_kind` (temporal flickering is exact only with the filter off).
    fps: one positive value or one per video (used by dynamic degree).
    """
    videos = list(videos)
    n = len(videos)
    names = list(names) if names is not None else [f"video {i}" for i in range(n)]
    if images is not None:
        images = list(images)
        if len(images) != n:
            raise InputError(f"{n} video(s) but {len(images)} conditioning image(s): counts must match")
    dims = check_dims(dims, images is not None)
    fps_list = _fps_list(fps, n, names)
    vids = [as_video(v, name) for v, name in zip(videos, names)]
    _check_lengths(vids, names, dims, fps_list)

    per: dict[str, list] = {d: [] for d in dims}
    pair_sums: dict[str, list] = {d: [] for d in dims}
    for i in tqdm(range(n), desc="vbench dims", unit="video", disable=None if progress else True):
        for d in dims:
            if d in _CONSISTENCY_FEATURES:
                total, pairs = consistency_sum([_CONSISTENCY_FEATURES[d](f) for f in vids[i]])
                per[d].append(total / pairs)
                pair_sums[d].append((total, pairs))
            else:
                per[d].append(_PER_VIDEO[d](vids[i], fps_list[i], images[i] if images is not None else None,
                                            static_filter))
    return {d: _aggregate(d, per[d], pair_sums[d], n, static_filter) for d in dims}
