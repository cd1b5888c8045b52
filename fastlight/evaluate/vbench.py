"""VBench-style video quality dimensions, weight-free, on any folder of MP4/GIF videos.

VBench (Huang et al., CVPR 2024, github.com/Vchitect/VBench) scores generated videos
along "dimensions". Most of them run a pretrained network (RAFT, AMT, DINO, CLIP,
MUSIQ, DreamSim, LAION aesthetic head). This module follows VBench's definitions --
frame sampling, per-video formula, normalisation to [0, 1], averaging over videos --
and replaces each network by a weight-free stand-in from OpenCV/numpy. Every result
says which it is:

* ``exact``  -- VBench's own computation (temporal flickering: it needs no network);
* ``proxy``  -- VBench's protocol and formula, a weight-free estimator inside;
* ``n/a``    -- cannot be approximated honestly without weights (aesthetic quality).

Dimension           kind   what replaces VBench's network
------------------  -----  --------------------------------------------------------------
temporal_flickering exact  (none: mean |frame diff| formula; the static-video filter that
                           picks which videos it scores uses OpenCV flow instead of RAFT)
dynamic_degree      proxy  exact protocol (~8 fps sampling, top-5 % flow magnitude,
                           thres 6*min(H,W)/256 * max(1, 8/fps), count round(4N/16));
                           OpenCV DIS optical flow instead of RAFT
motion_smoothness   proxy  exact protocol (even frames -> interpolate odd ones,
                           (255 - MAE)/255); flow-based midpoint warp instead of AMT-S
subject_consistency proxy  VBench formula (mean of cos(prev) and cos(first), clamped >= 0)
                           over HOG + Lab-thumbnail features instead of DINO ViT-B/16
background_cons.    proxy  same formula over HSV-histogram + colour-layout features
                           instead of CLIP ViT-B/32
i2v_subject         proxy  0.5 max cos(image, frame) + 0.5 mean cos(consecutive),
                           HOG + Lab features instead of DINO
i2v_background      proxy  0.4 max + 0.3 mean + 0.3 min, HSV/layout features instead of
                           DreamSim
imaging_quality     proxy  sharpness x noise x exposure x contrast in [0, 1] instead of
                           MUSIQ-SPAQ / 100
aesthetic_quality   n/a    (LAION aesthetic predictor on CLIP ViT-L/14)

Temporal flickering, as in VBench, is only defined on *static* videos (VBench's
``static_filter`` keeps the videos whose RAFT flow stays small; flicker is then the only
thing left to measure). ``temporal_flickering(frames)`` therefore returns ``None`` for a
video the filter rejects as moving; the dimension's score is the mean over the static
videos (``num_scored`` of them), ``None`` if there are none. Pass ``static_filter=False``
to score every video (not VBench's protocol).

Flow on tiny frames: OpenCV flow is computed on a copy upscaled (bicubic) so that the
shorter side is >= 128 px, then resized back and divided by the scale, so 24x24 and
192x192 videos of the same motion give the same flow in their own pixels. VBench's
thresholds scale with min(H, W)/256, so a 24x24 clip and its 8x upscale get the same
verdict. (For the Shapes world: 'quickly' = 1.0 px/frame at 24 px is clearly dynamic;
'slowly' = 0.5 px/frame sits at VBench's 0.5625 px threshold, so its verdict is a toss-up.)
OpenCV flow is kept only where it explains the frame change (see ``_trusted``): without
that, noise on flat backgrounds reads as motion where RAFT would see none.

``--backend vbench`` (``evaluate_folder(..., backend="vbench")``) lays the videos out in
VBench's custom-input naming (``<stem>.mp4``, GIFs re-encoded) and calls the official
package; without it a one-line error says how to install it.

Run ``python -m fastlight.evaluate.vbench --validate`` for the synthetic-video checks.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

__all__ = [
    "DIMENSIONS", "VBenchUnavailable", "temporal_flickering", "is_static", "dynamic_degree",
    "dynamic_degree_details", "motion_smoothness", "interpolate_midpoint", "subject_consistency",
    "background_consistency", "i2v_subject", "i2v_background", "imaging_quality",
    "imaging_quality_components", "aesthetic_quality", "optical_flow", "subject_features",
    "background_features", "score_videos", "read_video", "read_image", "evaluate_folder",
    "validation_table", "format_validation_table", "main",
]

VIDEO_EXTS = (".mp4", ".gif")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

FLOW_METHOD = "dis"  # "dis" (default) or "farneback"
FLOW_MIN_SIDE = 128  # flow is computed on an upscaled copy when the shorter side is smaller

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
        "kind": "exact", "needs_image": False, "min_frames": 2,
        "doc": "exact VBench formula (255 - mean |frame_t+1 - frame_t|) / 255 over all frames; scored "
               "only on videos VBench's static filter keeps (top-2% flow <= 3*min(H,W)/256 on all but "
               "round(2N/16) consecutive pairs, first<->last <= 2x that), flow from OpenCV instead of "
               "RAFT; per_video is None for moving videos",
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


class VBenchUnavailable(ImportError):
    """The official `vbench` package (or a part of it) is not installed."""


# --------------------------------------------------------------------------- inputs

def _as_video(frames, what: str = "video") -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 3:  # (F, H, W) grey
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{what}: expected frames of shape (F, H, W, 3), got {tuple(a.shape)}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        a = a[..., :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if a.size and float(np.nanmax(a)) <= 1.0 + 1e-6:
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def _as_image(image, what: str = "image") -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 3:
        a = a[None]
    else:
        raise ValueError(f"{what}: expected an (H, W, 3) image, got {tuple(np.asarray(image).shape)}")
    return _as_video(a, what)[0]


def _need_frames(frames: np.ndarray, dim: str, have: int | None = None) -> None:
    need = DIMENSIONS[dim]["min_frames"]
    have = len(frames) if have is None else have
    if have < need:
        raise ValueError(f"{dim} needs >= {need} frame(s), the video has {have}")


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _work_scale(h: int, w: int) -> int:
    return max(1, int(math.ceil(FLOW_MIN_SIDE / max(1, min(h, w)))))


def _upscale(img: np.ndarray, s: int) -> np.ndarray:
    if s == 1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (w * s, h * s), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------- optical flow

def _flow_raw(g0: np.ndarray, g1: np.ndarray, method: str) -> np.ndarray:
    """Dense flow frame0 -> frame1 on two uint8 grey images of the working size."""
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(g0, g1, None)
    if method == "farneback":
        m = min(g0.shape)
        levels = max(1, int(math.log2(max(m, 32) / 16)))
        win = int(max(9, m // 10)) | 1
        return cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, levels, win, 5, 7, 1.5,
                                            cv2.OPTFLOW_FARNEBACK_GAUSSIAN)
    raise ValueError(f"unknown flow method {method!r} (use 'dis' or 'farneback')")


def _haar_sigma(y: np.ndarray) -> float:
    """Noise sigma from the MAD of the finest Haar diagonal band (Donoho's estimator)."""
    hh, ww = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    if hh < 2 or ww < 2:
        return 0.0
    q = y[:hh, :ww].astype(np.float32)
    d = (q[0::2, 0::2] - q[0::2, 1::2] - q[1::2, 0::2] + q[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(d)) / 0.6745)


def _trusted(g0: np.ndarray, g1: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Keep a flow vector only where it explains the change between the two frames.

    Patch/variational flow hallucinates motion in flat, noisy regions (aperture problem),
    where RAFT's learned prior returns ~0. A pixel's flow is kept when warping frame1 by it
    removes more than half of the local mean |frame1 - frame0| (3x3 box, 5x5 from 64 px),
    tested at the frames' own resolution, and that change is above the noise
    (> 2 + 3 sigma grey levels, sigma = _haar_sigma), so noise cannot pass as motion (the
    blocky noise of nearest-upscaled videos is handled by _deblock). Other pixels take the
    Gaussian-weighted mean of nearby kept flow (normalised convolution, like RAFT's smooth
    fill-in of textureless interiors), or 0 when nothing kept is near. Static noise or a
    global brightness flicker thus give ~0 flow."""
    a, b = g0.astype(np.float32), g1.astype(np.float32)
    k = 3 if min(a.shape) < 64 else 5
    r0 = cv2.blur(np.abs(b - a), (k, k))
    r1 = cv2.blur(np.abs(_warp(b, flow) - a), (k, k))
    floor = 2.0 + 3.0 * max(_haar_sigma(a), _haar_sigma(b))
    keep = ((r0 - r1) > 0.5 * r0) & (r0 > floor)
    w = keep.astype(np.float32)
    sig = max(1.0, min(a.shape) / 16.0)
    den = cv2.GaussianBlur(w, (0, 0), sig)
    num = cv2.GaussianBlur(flow * w[..., None], (0, 0), sig)
    fill = np.where(den[..., None] > 0.05, num / np.maximum(den, 1e-6)[..., None], 0.0)
    return np.where(keep[..., None], flow, fill).astype(np.float32)


def optical_flow(frame0: np.ndarray, frame1: np.ndarray, method: str | None = None) -> np.ndarray:
    """(H, W, 2) float32 flow frame0 -> frame1 in frame0's pixels: OpenCV DIS (default) or
    Farneback, kept where it explains the change (see _trusted).

    Frames whose shorter side is < FLOW_MIN_SIDE are upscaled (bicubic) for the estimate,
    and the flow is resized back (area) and divided by the scale.
    """
    f0, f1 = _as_image(frame0), _as_image(frame1)
    g0, g1 = _gray(f0), _gray(f1)
    h, w = g0.shape
    s = _work_scale(h, w)
    flow = _flow_raw(_upscale(g0, s), _upscale(g1, s), method or FLOW_METHOD)
    if s > 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / float(s)
    return _trusted(g0, g1, flow)


def _block_factor(frames: np.ndarray) -> int:
    """s in (8, 4, 2) when the video is a nearest-neighbour upscale by s, else 1: neighbour
    differences across s-block boundaries must dwarf those at every other phase (> 2.5x; a
    natively rendered video has no preferred phase)."""
    f = frames[[0, len(frames) // 2, -1]].astype(np.float32).mean(axis=-1)
    dx = np.abs(np.diff(f, axis=2))  # dx[..., j] = |f[j+1] - f[j]|
    dy = np.abs(np.diff(f, axis=1)).transpose(0, 2, 1)
    for s in (8, 4, 2):
        if f.shape[1] % s or f.shape[2] % s or min(f.shape[1:]) // s < 4:
            continue
        # mean neighbour difference at each phase; phase s-1 crosses the block boundaries
        phase = [float(np.concatenate([dx[..., p::s].ravel(), dy[:, p::s].ravel()]).mean()) for p in range(s)]
        if phase[-1] > 0.5 and phase[-1] > 2.5 * max(phase[:-1]):
            return s
    return 1


def _deblock(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """(frames at their native resolution, upscale factor): flow on a nearest-upscaled video
    is estimated on the original pixels (its noise is blocky, which OpenCV flow would read
    as texture) and multiplied back by the factor."""
    s = _block_factor(frames)
    if s == 1:
        return frames, 1
    h, w = frames.shape[1:3]
    return np.stack([cv2.resize(f, (w // s, h // s), interpolation=cv2.INTER_AREA) for f in frames]), s


def _top_mean_magnitude(flow: np.ndarray, frac: float) -> float:
    """Mean of the largest `frac` of the per-pixel flow magnitudes (VBench's get_score)."""
    rad = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).ravel()
    cut = max(1, int(rad.size * frac))  # VBench: int(h*w*frac) (>= 1 here so tiny frames work)
    return float(np.mean(np.partition(rad, rad.size - cut)[rad.size - cut:]))


# --------------------------------------------------------------------------- temporal flickering

def is_static(frames: np.ndarray) -> bool:
    """VBench's static filter (vbench static_filter), OpenCV flow instead of RAFT.

    Pairs: every consecutive pair, then (first, last) and (last, first). Per pair the mean
    of the top-2% flow magnitudes; thres = 3 * min(H, W) / 256, count_num = round(2 N / 16).
    Static if no more than count_num consecutive pairs exceed thres and both first<->last
    pairs stay <= thres * count_num * 2.
    """
    frames = _as_video(frames)
    _need_frames(frames, "temporal_flickering")
    h, w = frames.shape[1:3]
    thres = 3.0 * (min(h, w) / 256.0)
    count_num = round(2 * (len(frames) / 16.0))
    small, fac = _deblock(frames)
    pairs = list(zip(small[:-1], small[1:])) + [(small[0], small[-1]), (small[-1], small[0])]
    scores = [fac * _top_mean_magnitude(optical_flow(a, b), 0.02) for a, b in pairs]
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
    frames = _as_video(frames)
    _need_frames(frames, "temporal_flickering")
    if static_filter and not is_static(frames):
        return None
    return _flicker_formula(frames)


# --------------------------------------------------------------------------- dynamic degree

def dynamic_degree_details(frames: np.ndarray, fps: float = 8.0) -> dict:
    """Everything VBench's DynamicDegree computes: sampled pairs' scores, thresholds, verdict."""
    frames = _as_video(frames)
    fps = float(fps) if fps and fps > 0 else 8.0
    interval = max(1, round(fps / 8))
    sampled = frames[::interval]
    _need_frames(sampled, "dynamic_degree")
    h, w = sampled.shape[1:3]
    factor = max(1.0, 8.0 / fps)
    thres = factor * 6.0 * (min(h, w) / 256.0)
    count_num = round(4 * (len(sampled) / 16.0))
    small, fac = _deblock(sampled)
    scores = [fac * _top_mean_magnitude(optical_flow(a, b), 0.05) for a, b in zip(small[:-1], small[1:])]
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
    """VBench dynamic degree of one video: True if it moves enough (see module doc)."""
    return bool(dynamic_degree_details(frames, fps)["dynamic"])


# --------------------------------------------------------------------------- motion smoothness

def _splat_half_flow(flow: np.ndarray) -> np.ndarray:
    """Flow from the t=0.5 frame back to frame 0, by forward-splatting -flow/2 from each
    source pixel to where it sits at t=0.5 (larger motion wins collisions: moving things are
    usually in front). Holes fall back to the backward approximation -flow(y)/2."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tx = np.rint(xs + 0.5 * flow[..., 0]).astype(np.int64)
    ty = np.rint(ys + 0.5 * flow[..., 1]).astype(np.int64)
    ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    mag = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)
    tgt = (ty * w + tx)[ok]
    src_mag = mag[ok]
    best = np.full(h * w, -1.0, np.float32)
    np.maximum.at(best, tgt, src_mag)
    win = src_mag >= best[tgt] - 1e-6
    acc = np.zeros((h * w, 2), np.float32)
    cnt = np.zeros(h * w, np.float32)
    src_flow = flow[ok][win]
    np.add.at(acc, tgt[win], -0.5 * src_flow)
    np.add.at(cnt, tgt[win], 1.0)
    out = (-0.5 * flow).reshape(-1, 2).copy()
    hit = cnt > 0
    out[hit] = acc[hit] / cnt[hit, None]
    return out.reshape(h, w, 2)


def _warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def interpolate_midpoint(frame0: np.ndarray, frame1: np.ndarray, method: str | None = None) -> np.ndarray:
    """The t=0.5 frame between two frames (uint8 RGB), warped from both with OpenCV flow.

    Flows both ways (optical_flow), each forward-splatted to t=0.5 (on the upscaled working
    grid for tiny frames), then the original frames are warped and averaged, so two
    identical frames interpolate to themselves exactly."""
    f0, f1 = _as_image(frame0), _as_image(frame1)
    h, w = f0.shape[:2]
    s = _work_scale(h, w)
    half = []
    for flow in (optical_flow(f0, f1, method), optical_flow(f1, f0, method)):
        if s > 1:
            up = cv2.resize(flow, (w * s, h * s), interpolation=cv2.INTER_LINEAR) * float(s)
            half.append(cv2.resize(_splat_half_flow(up), (w, h), interpolation=cv2.INTER_AREA) / float(s))
        else:
            half.append(_splat_half_flow(flow))
    mid = 0.5 * (_warp(f0.astype(np.float32), half[0]) + _warp(f1.astype(np.float32), half[1]))
    return np.clip(np.rint(mid), 0, 255).astype(np.uint8)


def motion_smoothness(frames: np.ndarray) -> float:
    """VBench motion smoothness: interpolate odd frames from even ones, (255 - MAE) / 255."""
    frames = _as_video(frames)
    _need_frames(frames, "motion_smoothness")
    small, fac = _deblock(frames)  # nearest-upscaled video: interpolate its own pixels
    even = small[0::2]
    interp = [interpolate_midpoint(a, b) for a, b in zip(even[:-1], even[1:])]
    if fac > 1:
        interp = [np.repeat(np.repeat(f, fac, axis=0), fac, axis=1) for f in interp]
    real = frames[1::2][:len(interp)]
    diffs = [float(np.mean(cv2.absdiff(a, b))) for a, b in zip(real, interp)]
    return float((255.0 - np.mean(diffs)) / 255.0)


# --------------------------------------------------------------------------- consistency features

_FEAT = 64


def _lab(img01: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(img01.astype(np.float32), cv2.COLOR_RGB2LAB)
    return np.stack([(lab[..., 0] - 50.0) / 50.0, lab[..., 1] / 128.0, lab[..., 2] / 128.0], -1)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def subject_features(frame: np.ndarray) -> np.ndarray:
    """Weight-free stand-in for DINO: a HOG spatial pyramid (1x1, 2x2, 4x4 cells of a 64x64
    resize, 9 unsigned orientation bins, magnitude-weighted, each level L2-normalised) + a
    4x4 Lab thumbnail carrying the same weight as the gradient part."""
    img = cv2.resize(_as_image(frame), (_FEAT, _FEAT), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    mag, ang = cv2.cartToPolar(gx, gy)
    b = np.minimum((np.mod(ang, np.pi) / np.pi * 9).astype(np.int64), 8).ravel()
    parts = []
    for cells in (1, 2, 4):
        side = _FEAT // cells
        cell = (np.arange(_FEAT)[:, None] // side) * cells + (np.arange(_FEAT)[None, :] // side)
        parts.append(_unit(np.bincount(cell.ravel() * 9 + b, weights=mag.ravel(), minlength=cells * cells * 9)))
    thumb = cv2.resize(_lab(img), (4, 4), interpolation=cv2.INTER_AREA).ravel()
    parts.append(math.sqrt(3.0) * _unit(thumb))
    return _unit(np.concatenate(parts))


def background_features(frame: np.ndarray) -> np.ndarray:
    """Weight-free stand-in for CLIP: HSV colour histogram (12x4x4 bins, square-rooted) +
    4x4 Lab colour layout, each L2-normalised."""
    img = cv2.resize(_as_image(frame), (_FEAT, _FEAT), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    hist = np.sqrt(hist / max(hist.sum(), 1.0))
    layout = cv2.resize(_lab(img.astype(np.float32) / 255.0), (4, 4), interpolation=cv2.INTER_AREA).ravel()
    return _unit(np.concatenate([_unit(hist), _unit(layout)]))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return max(0.0, float(np.dot(_unit(a), _unit(b))))


def _consistency_sum(feats: list[np.ndarray]) -> tuple[float, int]:
    total = 0.0
    for i in range(1, len(feats)):
        total += (_cos(feats[i - 1], feats[i]) + _cos(feats[0], feats[i])) / 2.0
    return total, len(feats) - 1


def subject_consistency(frames: np.ndarray) -> float:
    """VBench subject consistency of one video over weight-free subject features (proxy)."""
    frames = _as_video(frames)
    _need_frames(frames, "subject_consistency")
    total, n = _consistency_sum([subject_features(f) for f in frames])
    return total / n


def background_consistency(frames: np.ndarray) -> float:
    """VBench background consistency of one video over weight-free background features (proxy)."""
    frames = _as_video(frames)
    _need_frames(frames, "background_consistency")
    total, n = _consistency_sum([background_features(f) for f in frames])
    return total / n


def _i2v(frames: np.ndarray, image: np.ndarray, feat, weights: tuple[float, float, float], dim: str) -> float:
    frames = _as_video(frames)
    _need_frames(frames, dim)
    image = _as_image(image, f"{dim} image")
    h, w = frames.shape[1:3]
    if image.shape[:2] != (h, w):  # VBench-I2V crops the image to the video's ratio; we resize
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    fi = feat(image)
    ff = [feat(f) for f in frames]
    conform = [_cos(fi, f) for f in ff]
    consec = [_cos(a, b) for a, b in zip(ff[:-1], ff[1:])]
    wmax, wmean, wmin = weights
    return float(wmax * np.max(conform) + wmean * np.mean(consec) + wmin * np.min(consec))


def i2v_subject(frames: np.ndarray, image: np.ndarray) -> float:
    """VBench-I2V subject: 0.5 max cos(image, frame) + 0.5 mean cos(consecutive) (proxy)."""
    return _i2v(frames, image, subject_features, (0.5, 0.5, 0.0), "i2v_subject")


def i2v_background(frames: np.ndarray, image: np.ndarray) -> float:
    """VBench-I2V background: 0.4 max + 0.3 mean + 0.3 min (proxy, DreamSim replaced)."""
    return _i2v(frames, image, background_features, (0.4, 0.3, 0.3), "i2v_background")


# --------------------------------------------------------------------------- imaging / aesthetic quality

def _blur_effect(y: np.ndarray, k: int = 9) -> float:
    """Crete-Roffet et al. 2007 'blur effect' in [0, 1] (1 = very blurred): how much of the
    image's neighbour variation survives a k-tap box re-blur, worst of the two directions."""
    worst = 0.0
    for axis in (0, 1):
        if y.shape[axis] < 2:
            continue
        b = cv2.blur(y, (k, 1) if axis == 1 else (1, k))
        d_orig = np.abs(np.diff(y, axis=axis))
        d_blur = np.abs(np.diff(b, axis=axis))
        tot = float(d_orig.sum())
        lost = float(np.maximum(0.0, d_orig - d_blur).sum())
        worst = max(worst, (tot - lost) / tot if tot > 0 else 1.0)
    return worst


def imaging_quality_components(frame: np.ndarray) -> dict:
    """The terms of the imaging-quality proxy for one frame (each in [0, 1])."""
    img = _as_image(frame)
    h, w = img.shape[:2]
    if max(h, w) > 512:  # VBench's default 'longer' preprocessing for MUSIQ
        s = 512.0 / max(h, w)
        img = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sigma = _haar_sigma(y)  # per-pixel noise (finest scale only, as a viewer sees it)
    lo, hi = np.percentile(y, [0.5, 99.5])
    contrast_range = float(hi - lo)
    blur = _blur_effect(y)
    sharp = float(np.clip((0.85 - blur) / 0.55, 0.0, 1.0))
    noise = float(math.exp(-(sigma / 12.0) ** 2))
    mu = float(y.mean()) / 255.0
    clipped = float(np.mean((img <= 3) | (img >= 252)))  # clipped channel values
    exposure = (1.0 - min(1.0, max(0.0, abs(mu - 0.5) - 0.4) / 0.1)) * \
               (1.0 - 0.5 * min(1.0, max(0.0, clipped - 0.02) / 0.5))
    contrast = float(np.clip(contrast_range / 64.0, 0.0, 1.0))
    return {"sharpness": sharp, "noise": noise, "exposure": float(exposure), "contrast": contrast,
            "noise_sigma": sigma, "blur_effect": blur, "quality": float(sharp * noise * exposure * contrast)}


def imaging_quality(frames: np.ndarray) -> float:
    """Weight-free imaging quality in [0, 1] (stand-in for MUSIQ/100): mean over frames."""
    frames = _as_video(frames)
    _need_frames(frames, "imaging_quality")
    return float(np.mean([imaging_quality_components(f)["quality"] for f in frames]))


def aesthetic_quality(frames: np.ndarray) -> None:
    """n/a without weights (VBench uses the LAION aesthetic head on CLIP ViT-L/14)."""
    return None


# --------------------------------------------------------------------------- scoring many videos

def _default_dims(with_images: bool) -> list[str]:
    return [d for d, m in DIMENSIONS.items() if with_images or not m["needs_image"]]


def _check_dims(dims, with_images: bool) -> list[str]:
    if dims is None:
        return _default_dims(with_images)
    if isinstance(dims, str):
        dims = [d.strip() for d in dims.split(",") if d.strip()]
    dims = list(dict.fromkeys(dims))
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; known: {', '.join(DIMENSIONS)}")
    need_img = [d for d in dims if DIMENSIONS[d]["needs_image"]]
    if need_img and not with_images:
        raise ValueError(f"{', '.join(need_img)} need the conditioning images (images=...)")
    return dims


def score_videos(videos: list[np.ndarray], images: list[np.ndarray] | None = None, fps: float | Sequence[float] = 8.0,
                 dims=None, progress: bool = False, names: list[str] | None = None) -> dict:
    """Score a list of (F, H, W, 3) uint8 RGB videos on VBench-style dimensions.

    Returns {dim: {"score": float | None, "kind", "per_video": [...], "num_videos"}}; the
    score is the mean over videos in [0, 1] (dynamic degree: the fraction of dynamic
    videos; temporal flickering: mean over the static videos, "num_scored" of them;
    subject/background consistency: VBench's frame-pair-weighted mean, equal to the mean
    over videos when they have the same length). fps: one value or one per video.
    """
    videos = list(videos)
    n = len(videos)
    names = list(names) if names is not None else [f"video {i}" for i in range(n)]
    if images is not None:
        images = list(images)
        if len(images) != n:
            raise ValueError(f"{n} video(s) but {len(images)} conditioning image(s): counts must match")
    dims = _check_dims(dims, images is not None)
    if isinstance(fps, (int, float)) or fps is None:
        fps_list = [float(fps or 8.0)] * n
    else:
        fps_list = [float(f or 8.0) for f in fps]
        if len(fps_list) != n:
            raise ValueError(f"{n} video(s) but {len(fps_list)} fps values")

    vids = [_as_video(v, names[i]) for i, v in enumerate(videos)]
    for i, v in enumerate(vids):  # fail before the slow part, with the video's name
        for d in dims:
            have = len(v[::max(1, round(fps_list[i] / 8))]) if d == "dynamic_degree" else len(v)
            if have < DIMENSIONS[d]["min_frames"]:
                extra = f" after ~8 fps sampling of {len(v)}" if d == "dynamic_degree" else ""
                raise ValueError(f"{names[i]}: {d} needs >= {DIMENSIONS[d]['min_frames']} frame(s), "
                                 f"it has {have}{extra}")

    per: dict[str, list] = {d: [] for d in dims}
    pair_sums: dict[str, list] = {d: [] for d in dims}
    it = range(n)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="vbench dims", unit="video")
    for i in it:
        v = vids[i]
        for d in dims:
            if d == "temporal_flickering":
                per[d].append(temporal_flickering(v))
            elif d == "dynamic_degree":
                per[d].append(dynamic_degree(v, fps_list[i]))
            elif d == "motion_smoothness":
                per[d].append(motion_smoothness(v))
            elif d in ("subject_consistency", "background_consistency"):
                feat = subject_features if d == "subject_consistency" else background_features
                total, cnt = _consistency_sum([feat(f) for f in v])
                per[d].append(total / cnt)
                pair_sums[d].append((total, cnt))
            elif d == "i2v_subject":
                per[d].append(i2v_subject(v, images[i]))
            elif d == "i2v_background":
                per[d].append(i2v_background(v, images[i]))
            elif d == "imaging_quality":
                per[d].append(imaging_quality(v))
            elif d == "aesthetic_quality":
                per[d].append(None)

    out = {}
    for d in dims:
        vals = per[d]
        entry = {"score": None, "kind": DIMENSIONS[d]["kind"], "per_video": vals, "num_videos": n}
        if d in ("subject_consistency", "background_consistency") and pair_sums[d]:
            entry["score"] = sum(t for t, _ in pair_sums[d]) / sum(c for _, c in pair_sums[d])
        elif d == "dynamic_degree" and vals:
            entry["score"] = float(np.mean([float(b) for b in vals]))
        else:
            scored = [float(x) for x in vals if x is not None]
            entry["score"] = float(np.mean(scored)) if scored else None
            if d == "temporal_flickering":
                entry["num_scored"] = len(scored)
        if entry["score"] is not None:
            entry["score"] = float(min(1.0, max(0.0, entry["score"])))
        out[d] = entry
    return out


# --------------------------------------------------------------------------- reading files

def _read_gif(path: Path) -> tuple[np.ndarray, float | None]:
    from PIL import Image, ImageSequence

    frames, durs = [], []
    with Image.open(path) as im:
        for fr in ImageSequence.Iterator(im):
            frames.append(np.asarray(fr.convert("RGB"), dtype=np.uint8))
            durs.append(fr.info.get("duration", 0) or 0)
    fps = 1000.0 / float(np.mean(durs)) if durs and np.mean(durs) > 0 else None
    return (np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)), fps


def _read_mp4(path: Path) -> tuple[np.ndarray, float | None]:
    frames, fps = [], None
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            fps = cap.get(cv2.CAP_PROP_FPS) or None
            while True:
                ok, fr = cap.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:  # OpenCV without a working FFmpeg backend: try PyAV via imageio
        try:
            import imageio.v3 as iio

            frames = list(iio.imread(path, plugin="pyav"))
            try:
                fps = iio.immeta(path, plugin="pyav").get("fps", fps)
            except Exception:
                pass
        except Exception:
            frames = []
    if not frames:
        return np.zeros((0, 1, 1, 3), np.uint8), fps
    if len({f.shape for f in frames}) != 1:
        raise ValueError("frames of different sizes")
    return np.stack(frames).astype(np.uint8), fps


def read_video(path) -> tuple[np.ndarray, float | None]:
    """(frames (F, H, W, 3) uint8 RGB, fps or None) of an MP4 or GIF; F may be 0."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return _read_gif(path)
    return _read_mp4(path)


def read_image(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read conditioning image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _pair_images(video_files: list[Path], images) -> list[Path]:
    folder = Path(images)
    if not folder.is_dir():
        raise ValueError(f"images must be a folder of PNG/JPG files, got {images}")
    imgs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if len(imgs) != len(video_files):
        raise ValueError(f"{len(video_files)} video(s) in the folder but {len(imgs)} image(s) in {folder}: "
                         "counts must match")
    by_stem = {p.stem: p for p in imgs}
    if all(v.stem in by_stem for v in video_files):
        return [by_stem[v.stem] for v in video_files]
    return imgs  # sorted order


def _to_jsonable(x):
    if isinstance(x, dict):
        return {str(k): _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _write_json_atomic(obj, path) -> None:
    from fastlight.fileio import atomic_write_json

    atomic_write_json(path, _to_jsonable(obj))


def evaluate_folder(folder, images=None, fps: float | None = None, dims=None, backend: str = "builtin",
                    out_json=None, progress: bool = True) -> dict:
    """Score every *.mp4 / *.gif of `folder` (sorted by name).

    images: a folder of conditioning PNG/JPGs for the i2v dimensions, matched by stem when
    every video has one, else by sorted order (counts must match). fps: None = each file's
    own (8 when unknown). Unreadable or empty files are listed under "skipped" and not
    scored. Returns score_videos' dict plus "videos", "skipped", "num_skipped", "backend",
    "folder"; written atomically to out_json when given.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"not a folder of videos: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if not files:
        raise ValueError(f"no .mp4/.gif videos in {folder}")
    image_files = _pair_images(files, images) if images is not None else None
    dims = _check_dims(dims, image_files is not None)
    if backend not in ("builtin", "vbench"):
        raise ValueError(f"unknown backend {backend!r} (use 'builtin' or 'vbench')")

    vids, fpss, names, kept_imgs, kept_files, skipped = [], [], [], [], [], []
    it = list(enumerate(files))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="reading videos", unit="video")
    for i, p in it:
        try:
            frames, vfps = read_video(p)
        except Exception:
            frames, vfps = None, None
        if frames is None or len(frames) == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
            skipped.append(p.name)
            continue
        vids.append(frames)
        fpss.append(float(fps) if fps else float(vfps or 8.0))
        names.append(p.name)
        kept_files.append(p)
        if image_files is not None:
            kept_imgs.append(image_files[i])
    if skipped:
        print(f"vbench: skipped {len(skipped)} unreadable/empty video(s): {', '.join(skipped)}", file=sys.stderr)

    if backend == "vbench":
        res = _evaluate_with_vbench(kept_files, kept_imgs if image_files is not None else None, dims, fpss)
    else:
        imgs = [read_image(p) for p in kept_imgs] if image_files is not None else None
        res = score_videos(vids, imgs, fps=fpss, dims=dims, progress=progress, names=names)
    res.update({"videos": names, "skipped": skipped, "num_skipped": len(skipped), "backend": backend,
                "folder": str(folder)})
    if out_json:
        _write_json_atomic(res, out_json)
    return res


# --------------------------------------------------------------------------- official VBench backend

_INSTALL_HINT = ("backend 'vbench' needs the official VBench package and its weights: pip install vbench "
                 "(weights download to ~/.cache/vbench, see github.com/Vchitect/VBench#installation), "
                 "or use backend='builtin'")


def _layout_for_vbench(files: list[Path], fpss: list[float], dest: Path) -> list[Path]:
    """VBench custom-input naming: one `<stem>.mp4` per video (prompt = file stem). MP4s are
    symlinked (copied if links fail); GIFs are re-encoded to MP4 (VBench's flow dimensions
    read .mp4 only)."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    out, used = [], set()
    for p, f in zip(files, fpss):
        name = p.stem if p.stem not in used else f"{p.stem}_{p.suffix[1:].lower()}"  # a.mp4 + a.gif
        used.add(name)
        target = dest / f"{name}.mp4"
        if target.exists() or target.is_symlink():
            target.unlink()
        if p.suffix.lower() == ".mp4":
            try:
                target.symlink_to(p.resolve())
            except OSError:
                shutil.copy2(p, target)
        else:
            from fastlight.data.video import write_video

            frames, _ = read_video(p)
            write_video(target, np.asarray(frames), fps=int(round(f or 8.0)))
        out.append(target)
    return out


def _evaluate_with_vbench(files: list[Path], image_files: list[Path] | None, dims: list[str],
                          fpss: list[float], workdir=None, device=None) -> dict:
    try:
        import vbench  # noqa: F401
        from vbench import VBench
    except ImportError:
        raise VBenchUnavailable(_INSTALL_HINT) from None
    i2v_dims = [d for d in dims if DIMENSIONS[d]["needs_image"]]
    std_dims = [d for d in dims if not DIMENSIONS[d]["needs_image"]]
    if i2v_dims:
        try:
            import importlib

            importlib.import_module("vbench2_beta_i2v")
        except ImportError:
            raise VBenchUnavailable("i2v dimensions need VBench-I2V (vbench2_beta_i2v, not in the pip "
                                    "package): clone github.com/Vchitect/VBench and add it to PYTHONPATH") from None
    if device is None:
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if workdir is None:  # the layout is only symlinks/re-encodes: drop it afterwards
        with tempfile.TemporaryDirectory(prefix="fastlight_vbench_") as tmp:
            return _evaluate_with_vbench(files, image_files, dims, fpss, workdir=tmp, device=device)
    work = Path(workdir)
    laid = _layout_for_vbench(files, fpss, work / "videos")
    by_path = {}
    for i, p in enumerate(laid):
        by_path[str(p)] = i
        by_path[str(p.resolve())] = i
        by_path[p.stem] = i
    n = len(laid)
    out: dict[str, dict] = {}

    def _collect(dim, result):
        score, video_results = result[0], result[1] if len(result) > 1 else []
        per = [None] * n
        for r in video_results or []:
            key = str(r.get("video_path", ""))
            i = by_path.get(key, by_path.get(Path(key).stem))
            if i is not None:
                v = r.get("video_results")
                per[i] = bool(v) if dim == "dynamic_degree" else (None if v is None else float(v))
        out[dim] = {"score": None if score is None else float(score), "kind": "exact", "per_video": per,
                    "num_videos": n, "backend": "vbench"}

    run_dims = [d for d in std_dims if d != "temporal_flickering"]
    if "temporal_flickering" in std_dims:  # VBench: flicker is scored on static videos only
        try:
            from easydict import EasyDict
            from vbench.cli.static_filter import StaticFilter
            from vbench.utils import CACHE_DIR
        except Exception as e:
            raise VBenchUnavailable(f"temporal_flickering needs VBench's static filter (RAFT weights): {e}") from None
        sf = StaticFilter(EasyDict(model=f"{CACHE_DIR}/raft_model/models/raft-things.pth", small=False,
                                   mixed_precision=False, alternate_corr=False), device)
        static_dir = work / "static"
        static_dir.mkdir(exist_ok=True)
        for p in laid:
            if sf.infer(str(p)):
                (static_dir / p.name).symlink_to(p.resolve())
        if any(static_dir.iterdir()):
            bench = VBench(device, str(Path(vbench.__file__).parent / "VBench_full_info.json"), str(work / "results"))
            bench.evaluate(videos_path=str(static_dir), name="flicker", dimension_list=["temporal_flickering"],
                           local=True, mode="custom_input")
            res = json.loads((work / "results" / "flicker_eval_results.json").read_text())
            _collect("temporal_flickering", res["temporal_flickering"])
        else:
            out["temporal_flickering"] = {"score": None, "kind": "exact", "per_video": [None] * n,
                                          "num_videos": n, "backend": "vbench"}
        out["temporal_flickering"]["num_scored"] = sum(v is not None for v in out["temporal_flickering"]["per_video"])
    if run_dims:
        bench = VBench(device, str(Path(vbench.__file__).parent / "VBench_full_info.json"), str(work / "results"))
        bench.evaluate(videos_path=str(work / "videos"), name="fastlight", dimension_list=run_dims, local=True,
                       mode="custom_input")
        res = json.loads((work / "results" / "fastlight_eval_results.json").read_text())
        for d in run_dims:
            _collect(d, res[d])
    if i2v_dims:
        import importlib

        i2v_utils = importlib.import_module("vbench2_beta_i2v.utils")
        info = [{"prompt_en": p.stem, "dimension": i2v_dims, "video_list": [str(p)],
                 "custom_image_path": str(Path(img).resolve())} for p, img in zip(laid, image_files)]
        info_path = work / "i2v_full_info.json"
        info_path.write_text(json.dumps(info))
        subs = i2v_utils.init_submodules(i2v_dims, local=True)
        for d in i2v_dims:
            mod = importlib.import_module(f"vbench2_beta_i2v.{d}")
            _collect(d, getattr(mod, f"compute_{d}")(str(info_path), device, subs[d]))
    return {d: out[d] for d in dims if d in out}


# --------------------------------------------------------------------------- validation on synthetic videos

def _texture(h: int, w: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = r.random((max(2, h // 4 + 2), max(2, w // 4 + 2), 3)).astype(np.float32)
    t = cv2.resize(t, (w, h), interpolation=cv2.INTER_CUBIC)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return (t * 255).astype(np.uint8)


def _shifted_texture(size: int, k: float, n: int = 8, seed: int = 0) -> np.ndarray:
    """A smooth random texture under a camera panning right: content moves k px left per frame."""
    pad = int(math.ceil(abs(k) * n)) + 4
    big = _texture(size + pad, size + pad, seed)
    out = []
    for i in range(n):
        m = np.float32([[1, 0, -k * i], [0, 1, 0]])
        out.append(cv2.warpAffine(big, m, (big.shape[1], big.shape[0]), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)[:size, :size])
    return np.stack(out)


def _disk_clip(size: int, positions: Sequence[float], bg=(31, 31, 31), col=(235, 31, 31), r: float = 4.0,
               ss: int = 4) -> np.ndarray:
    """A Shapes-world-like clip: an anti-aliased disk at x = positions[t] (px) on a dark canvas."""
    out = []
    for x in positions:
        img = np.zeros((size * ss, size * ss, 3), np.uint8)
        img[:] = bg
        cv2.circle(img, (int(round(x * ss * 16)), int(round(size / 2 * ss * 16))), int(round(r * ss * 16)), col,
                   -1, lineType=cv2.LINE_AA, shift=4)
        out.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def _upscale_video(v: np.ndarray, s: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (f.shape[1] * s, f.shape[0] * s), interpolation=cv2.INTER_NEAREST) for f in v])


def validation_table() -> list[dict]:
    """Synthetic videos with known answers; one row per check (all must pass)."""
    rows: list[dict] = []

    def row(dim, case, expected, got, ok):
        rows.append({"dimension": dim, "case": case, "expected": expected, "got": got, "pass": bool(ok)})

    def fmt(x):
        return "None" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))

    # dynamic degree: panning texture, threshold 6*min(H,W)/256 (64 px: 1.5 px/frame)
    for k in (0.0, 0.5, 1.0, 2.5, 4.0):
        d = dynamic_degree_details(_shifted_texture(64, k), 8.0)
        exp = k > 1.5
        row("dynamic_degree", f"64px texture panned {k:g} px/frame @8fps (thres {d['thres']:.2f})",
            "dynamic" if exp else "static", f"{'dynamic' if d['dynamic'] else 'static'} "
            f"(top5% {np.median(d['scores']):.2f})", d["dynamic"] == exp)
    # Shapes-world scale: 24 px, thres 0.5625; and its 8x upscale (thres 4.5)
    for k in (0.25, 1.0):
        v = _disk_clip(24, [6 + k * t for t in range(8)])
        for s in (1, 8):
            vv = _upscale_video(v, s) if s > 1 else v
            d = dynamic_degree_details(vv, 8.0)
            exp = k > 0.5625
            row("dynamic_degree", f"{24 * s}px disk moving {k:g} px/frame (at 24 px) @8fps",
                "dynamic" if exp else "static", "dynamic" if d["dynamic"] else "static", d["dynamic"] == exp)
    # fps handling: 16 fps keeps every 2nd frame; 4 fps doubles the threshold
    v16 = _shifted_texture(64, 1.0, n=16)
    d = dynamic_degree_details(v16, 16.0)
    row("dynamic_degree", "64px, 1 px/frame @16fps -> every 2nd frame, 2 px/pair", "dynamic",
        f"{'dynamic' if d['dynamic'] else 'static'} (interval {d['interval']})",
        d["dynamic"] and d["interval"] == 2)
    d = dynamic_degree_details(_shifted_texture(64, 2.5), 4.0)
    row("dynamic_degree", "64px, 2.5 px/frame @4fps (thres x2 = 3.0)", "static",
        "dynamic" if d["dynamic"] else "static", not d["dynamic"])

    # temporal flickering
    base = _texture(32, 32, 3)
    rng = np.random.default_rng(1)
    steady = np.stack([np.clip(base.astype(np.int16) + rng.integers(-1, 2, base.shape), 0, 255).astype(np.uint8)
                       for _ in range(8)])
    flick = np.stack([np.clip(base.astype(np.int16) + (12 if t % 2 else -12), 0, 255).astype(np.uint8)
                      for t in range(8)])
    still = np.stack([base] * 8)
    ts, tf, t0 = temporal_flickering(steady), temporal_flickering(flick), temporal_flickering(still)
    row("temporal_flickering", "identical frames", "1.0", fmt(t0), t0 == 1.0)
    manual = (255.0 - np.mean([np.abs(flick[i + 1].astype(float) - flick[i]).mean() for i in range(7)])) / 255.0
    row("temporal_flickering", "+-12 brightness flicker = exact formula", f"{manual:.4f}", fmt(tf),
        tf is not None and abs(tf - manual) < 1e-6)
    row("temporal_flickering", "flickering < steady (+-1 noise)", "flicker < steady",
        f"{fmt(tf)} < {fmt(ts)}", tf is not None and ts is not None and tf < ts)
    tm = temporal_flickering(_shifted_texture(32, 3.0))
    row("temporal_flickering", "panning 3 px/frame: rejected by static filter", "None", fmt(tm), tm is None)
    # a still object with per-frame noise (a generator's shimmer): static, and flickers more
    still_disk = _disk_clip(24, [12.0] * 8)
    noisy = np.clip(still_disk + np.random.default_rng(5).normal(0, 5, still_disk.shape), 0, 255).astype(np.uint8)
    for s in (1, 8):
        a, b = (still_disk, noisy) if s == 1 else (_upscale_video(still_disk, s), _upscale_video(noisy, s))
        ta, tb = temporal_flickering(a), temporal_flickering(b)
        row("temporal_flickering", f"{24 * s}px still disk: clean > noisy (sigma 5, kept as static)",
            "clean > noisy", f"{fmt(ta)} > {fmt(tb)}", ta is not None and tb is not None and ta > tb)
        dd = dynamic_degree(b, 8.0)
        row("dynamic_degree", f"{24 * s}px still disk + noise sigma 5 (no motion)", "static",
            "dynamic" if dd else "static", not dd)

    # motion smoothness: steady motion vs a dropped frame
    steady_pos = [6 + 1.5 * t for t in range(8)]
    dropped_pos = [6 + 1.5 * t for t in (0, 1, 2, 3, 5, 6, 7, 8)]
    ms_s = motion_smoothness(_disk_clip(32, steady_pos))
    ms_d = motion_smoothness(_disk_clip(32, dropped_pos))
    row("motion_smoothness", "disk 1.5 px/frame: steady > one dropped frame", "steady > dropped",
        f"{ms_s:.4f} > {ms_d:.4f}", ms_s > ms_d)
    ms_s8 = motion_smoothness(_upscale_video(_disk_clip(24, [6 + t for t in range(8)]), 8))
    ms_d8 = motion_smoothness(_upscale_video(_disk_clip(24, [6 + t for t in (0, 1, 2, 3, 5, 6, 7, 8)]), 8))
    row("motion_smoothness", "192px (24px x8 nearest) disk 1 px/frame: steady > dropped frame",
        "steady > dropped", f"{ms_s8:.4f} > {ms_d8:.4f}", ms_s8 > ms_d8)
    ms_t = motion_smoothness(_shifted_texture(32, 2.0))
    ms_td = motion_smoothness(_shifted_texture(32, 2.0, n=9)[[0, 1, 2, 3, 5, 6, 7, 8]])
    row("motion_smoothness", "texture 2 px/frame: steady > one dropped frame", "steady > dropped",
        f"{ms_t:.4f} > {ms_td:.4f}", ms_t > ms_td)
    jit = _shifted_texture(32, 2.0, n=9)[[0, 1, 2, 4, 3, 5, 6, 8]]
    ms_j = motion_smoothness(jit)
    row("motion_smoothness", "texture 2 px/frame: steady > frames out of order", "steady > jittery",
        f"{ms_t:.4f} > {ms_j:.4f}", ms_t > ms_j)
    ms_0 = motion_smoothness(still)
    row("motion_smoothness", "identical frames", "1.0", fmt(ms_0), abs(ms_0 - 1.0) < 1e-9)

    # subject / background consistency
    pan = _disk_clip(32, [8 + 1.0 * t for t in range(8)])
    other = _disk_clip(32, [8 + 1.0 * t for t in range(8)], bg=(200, 200, 40), col=(20, 40, 220))
    cut = np.concatenate([pan[:4], other[4:]])
    scenes = []
    for i in range(8):  # every frame an unrelated scene (random colours, size, place)
        r = np.random.default_rng(100 + i)
        scenes.append(_disk_clip(32, [float(r.uniform(8, 24))], bg=tuple(int(c) for c in r.integers(0, 256, 3)),
                                 col=tuple(int(c) for c in r.integers(0, 256, 3)), r=float(r.uniform(3, 10)))[0])
    unrelated = np.stack(scenes)
    for name, fn in (("subject_consistency", subject_consistency), ("background_consistency", background_consistency)):
        s_still, s_pan, s_cut, s_unrel = fn(still), fn(pan), fn(cut), fn(unrelated)
        row(name, "identical frames", "1.0", fmt(s_still), abs(s_still - 1.0) < 1e-6)
        row(name, "moving disk > scene cut halfway > every frame a new scene", "pan > cut > unrelated",
            f"{s_pan:.3f} > {s_cut:.3f} > {s_unrel:.3f}", s_pan > s_cut > s_unrel)

    # i2v: video that starts from its image vs one from a different image
    for name, fn in (("i2v_subject", i2v_subject), ("i2v_background", i2v_background)):
        good, bad = fn(pan, pan[0]), fn(pan, other[0])
        row(name, "conditioned on own first frame > on another image", "own > other",
            f"{good:.3f} > {bad:.3f}", good > bad)

    # imaging quality: clean vs degraded copies of the same frames
    clean = _disk_clip(48, [12 + 2 * t for t in range(4)], bg=(40, 70, 110), col=(230, 200, 60), r=9)
    clean = np.clip(clean.astype(np.int16) + (_shifted_texture(48, 2.0, n=4).astype(np.int16) - 128) // 3,
                    0, 255).astype(np.uint8)
    q_clean = imaging_quality(clean)
    degr = {
        "gaussian blur sigma 2": np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clean]),
        "gaussian noise sigma 25": np.clip(clean + np.random.default_rng(4).normal(0, 25, clean.shape), 0, 255
                                           ).astype(np.uint8),
        "over-exposed x2.5": np.clip(clean.astype(np.float32) * 2.5, 0, 255).astype(np.uint8),
        "washed out (contrast x0.1)": (clean.astype(np.float32) * 0.1 + 115).astype(np.uint8),
    }
    for name, v in degr.items():
        q = imaging_quality(v)
        row("imaging_quality", f"clean > {name}", "clean > degraded", f"{q_clean:.3f} > {q:.3f}", q_clean > q)
    row("aesthetic_quality", "no weights", "None (n/a)", fmt(aesthetic_quality(clean)),
        aesthetic_quality(clean) is None)
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    return sorted(rows, key=lambda r: order[r["dimension"]])  # stable: cases keep their order


def format_validation_table(rows: list[dict]) -> str:
    """A Markdown table of validation_table() rows (for the README)."""
    lines = ["| dimension | kind | case | expected | got | pass |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dimension']} | {DIMENSIONS[r['dimension']]['kind']} | {r['case']} | {r['expected']} | "
                     f"{r['got']} | {'yes' if r['pass'] else 'NO'} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastlight.evaluate.vbench",
                                description="VBench-style dimensions (weight-free) on a folder of MP4/GIF videos")
    p.add_argument("folder", nargs="?", help="folder of *.mp4 / *.gif videos")
    p.add_argument("--images", help="folder of conditioning images (I2V dims), matched by stem or sorted order")
    p.add_argument("--fps", type=float, default=None, help="override each video's fps")
    p.add_argument("--dims", default=None, help=f"comma-separated subset of: {', '.join(DIMENSIONS)}")
    p.add_argument("--backend", choices=("builtin", "vbench"), default="builtin")
    p.add_argument("--out", default=None, help="write the results JSON here")
    p.add_argument("--validate", action="store_true", help="run the synthetic-video validation table")
    a = p.parse_args(argv)
    if a.validate:
        t0 = time.time()
        rows = validation_table()
        print(format_validation_table(rows))
        print(f"\n{sum(r['pass'] for r in rows)}/{len(rows)} passed in {time.time() - t0:.1f} s")
        return 0 if all(r["pass"] for r in rows) else 1
    if not a.folder:
        p.error("give a folder of videos (or --validate)")
    try:
        res = evaluate_folder(a.folder, images=a.images, fps=a.fps, dims=a.dims, backend=a.backend, out_json=a.out)
    except (ValueError, VBenchUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for d in DIMENSIONS:
        if d in res:
            s = res[d]["score"]
            print(f"{d:24s} {res[d]['kind']:6s} {'n/a' if s is None else f'{s:.4f}'}")
    if res["num_skipped"]:
        print(f"skipped {res['num_skipped']}: {', '.join(res['skipped'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
