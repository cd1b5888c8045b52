"""The VBench-style dimensions this package scores: their kind (exact / proxy / n/a), whether they
need the conditioning image, the fewest frames they are defined on, which weight-free functions stand
in for VBench's networks (``stand_ins``, checked against the code by a test) and what replaces them
(``doc``); the checks every scorer runs on its inputs.

A dimension is ``exact`` only when no stand-in takes part in its score. Temporal flickering's formula
needs no network, but VBench scores it only on the videos its RAFT static filter keeps, and ours
uses OpenCV flow there: with the filter on (VBench's protocol) it is a ``proxy``; with the filter
off (every video scored: `static_filter=False`) it is ``exact``."""
from __future__ import annotations

import numpy as np

from fastlight.errors import DataError, InputError

DIMENSIONS: dict[str, dict] = {
    "subject_consistency": {
        "kind": "proxy", "needs_image": False, "min_frames": 2,
        "doc": "VBench formula: per frame i>=1, (max(0,cos(f_i-1,f_i)) + max(0,cos(f_0,f_i)))/2, mean per "
               "video, pair-weighted mean over videos; features = HOG pyramid (1x1+2x2+4x4 cells, 9 "
               "bins) + Lab 4x4 thumbnail of a 64x64 resize instead of DINO ViT-B/16 -> proxy",
    },
    "background_consistency": {
        "kind": "proxy", "needs_image": False, "min_frames": 2,
        "doc": "VBench formula as subject_consistency; features = HSV colour histogram (12x4x4, "
               "Hellinger) + 4x4 Lab colour layout instead of CLIP ViT-B/32 -> proxy",
    },
    "temporal_flickering": {
        "kind": "proxy", "needs_image": False, "min_frames": 2,
        "doc": "VBench formula (255 - mean |frame_t+1 - frame_t|) / 255 over all frames, scored only on "
               "videos VBench's static filter keeps (top-2% flow <= 3*min(H,W)/256 on all but round(2N/16) "
               "consecutive pairs, first<->last <= 2x that) with OpenCV flow instead of RAFT -> proxy "
               "(per_video is None for moving videos); static filter off: every video scored, exact",
    },
    "motion_smoothness": {
        "kind": "proxy", "needs_image": False, "min_frames": 3,
        "doc": "VBench protocol: keep even frames, interpolate the odd ones, (255 - mean |interp - "
               "real|)/255; interpolator = OpenCV-flow midpoint warp (forward-splatted half flow, "
               "both directions) instead of AMT-S -> proxy",
    },
    "dynamic_degree": {
        "kind": "proxy", "needs_image": False, "min_frames": 2,
        "doc": "exact VBench protocol (every round(fps/8)-th frame, per pair mean of the top-5% flow "
               "magnitudes, dynamic if >= round(4N/16) pairs exceed 6*min(H,W)/256*max(1,8/fps)); "
               "flow = OpenCV DIS instead of RAFT -> proxy of the flow only. Score = fraction dynamic",
    },
    "aesthetic_quality": {
        "kind": "n/a", "needs_image": False, "min_frames": 1,
        "doc": "n/a without weights (VBench: LAION aesthetic predictor on CLIP ViT-L/14); use "
               "backend='vbench'",
    },
    "imaging_quality": {
        "kind": "proxy", "needs_image": False, "min_frames": 1,
        "doc": "per frame (longer side <= 512 as VBench), product of sharpness (Crete-Roffet blur "
               "effect), noise (exp(-(sigma/12)^2), sigma = MAD of the finest Haar diagonal band), "
               "exposure (extreme mean brightness, clipped channel values) and contrast (0.5-99.5 percentile "
               "range / 64) terms, mean over frames, instead of MUSIQ-SPAQ / 100 -> proxy",
    },
    "i2v_subject": {
        "kind": "proxy", "needs_image": True, "min_frames": 2,
        "doc": "VBench-I2V formula 0.5*max_i cos(image, f_i) + 0.5*mean_i cos(f_i-1, f_i) (clamped "
               ">= 0) over the subject features instead of DINO -> proxy",
    },
    "i2v_background": {
        "kind": "proxy", "needs_image": True, "min_frames": 2,
        "doc": "VBench-I2V formula 0.4*max cos(image, f_i) + 0.3*mean + 0.3*min cos(f_i-1, f_i) "
               "over the background features instead of DreamSim -> proxy",
    },
}


# the weight-free functions (names in fastlight.evaluate.vbench) that replace VBench's network in each
# dimension's score; () = none takes part. temporal_flickering's is its static filter's flow.
STAND_INS: dict[str, tuple[str, ...]] = {
    "subject_consistency": ("subject_features",),
    "background_consistency": ("background_features",),
    "temporal_flickering": ("optical_flow",),
    "motion_smoothness": ("interpolate_midpoint", "optical_flow"),
    "dynamic_degree": ("optical_flow",),
    "aesthetic_quality": (),
    "imaging_quality": ("imaging_quality_components",),
    "i2v_subject": ("subject_features",),
    "i2v_background": ("background_features",),
}


def stand_ins(dim: str, static_filter: bool = True) -> tuple[str, ...]:
    """The stand-in functions that take part in `dim`'s score (module doc)."""
    if dim == "temporal_flickering" and not static_filter:
        return ()
    return STAND_INS[dim]


def dimension_kind(dim: str, static_filter: bool = True) -> str:
    """'exact' when no stand-in takes part in `dim`'s score, 'proxy' when one does, 'n/a' when the
    dimension is not computed without weights."""
    if DIMENSIONS[dim]["kind"] == "n/a":
        return "n/a"
    return "proxy" if stand_ins(dim, static_filter) else "exact"


def default_dims(with_images: bool) -> list[str]:
    """Every dimension, less those that need a conditioning image when there is none."""
    return [d for d, m in DIMENSIONS.items() if with_images or not m["needs_image"]]


def check_dims(dims, with_images: bool) -> list[str]:
    """`dims` (None = the defaults, a comma-separated string or a list) as a list of known names."""
    if dims is None:
        return default_dims(with_images)
    if isinstance(dims, str):
        dims = [d.strip() for d in dims.split(",") if d.strip()]
    dims = list(dict.fromkeys(dims))
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise InputError(f"unknown dimension(s) {unknown}; known: {', '.join(DIMENSIONS)}")
    need_img = [d for d in dims if DIMENSIONS[d]["needs_image"]]
    if need_img and not with_images:
        raise InputError(f"{', '.join(need_img)} need the conditioning images (images=...)")
    return dims


def need_frames(frames: np.ndarray, dim: str, have: int | None = None) -> None:
    """One-line ValueError when a video has fewer frames than `dim` is defined on."""
    need = DIMENSIONS[dim]["min_frames"]
    have = len(frames) if have is None else have
    if have < need:
        raise DataError(f"{dim} needs >= {need} frame(s), the video has {have}")
