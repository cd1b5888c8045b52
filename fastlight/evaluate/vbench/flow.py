"""Dense optical flow for the motion dimensions (OpenCV DIS or Farneback instead of VBench's RAFT),
and the flow-based midpoint interpolator that stands in for AMT-S.

Flow on tiny frames: OpenCV flow is computed on a copy upscaled (bicubic) so that the shorter side
is >= FLOW_MIN_SIDE px, then resized back and divided by the scale, so 24x24 and 192x192 videos of
the same motion give the same flow in their own pixels. VBench's thresholds scale with
min(H, W)/256, so a 24x24 clip and its 8x upscale get the same verdict. (For the Shapes world:
'quickly' = 1.0 px/frame at 24 px is clearly dynamic; 'slowly' = 0.5 px/frame sits at VBench's
0.5625 px threshold, so its verdict is a toss-up.) OpenCV flow is kept only where it explains the
frame change (see `_trusted`): without that, noise on flat backgrounds reads as motion where RAFT
would see none. A nearest-neighbour upscaled video is analysed at its native resolution
(`deblock`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from fastlight.errors import InputError
from fastlight.evaluate.vbench.frames import as_image, gray, haar_sigma

FLOW_METHOD = "dis"  # "dis" (default) or "farneback"
FLOW_MIN_SIDE = 128  # flow is computed on an upscaled copy when the shorter side is smaller


def _work_scale(h: int, w: int) -> int:
    return max(1, int(math.ceil(FLOW_MIN_SIDE / max(1, min(h, w)))))


def _upscale(img: np.ndarray, s: int) -> np.ndarray:
    if s == 1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (w * s, h * s), interpolation=cv2.INTER_CUBIC)


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
    raise InputError(f"unknown flow method {method!r} (use 'dis' or 'farneback')")


def _trusted(g0: np.ndarray, g1: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Keep a flow vector only where it explains the change between the two frames.

    Patch/variational flow hallucinates motion in flat, noisy regions (aperture problem),
    where RAFT's learned prior returns ~0. A pixel's flow is kept when warping frame1 by it
    removes more than half of the local mean |frame1 - frame0| (3x3 box, 5x5 from 64 px),
    tested at the frames' own resolution, and that change is above the noise
    (> 2 + 3 sigma grey levels, sigma = haar_sigma), so noise cannot pass as motion (the
    blocky noise of nearest-upscaled videos is handled by deblock). Other pixels take the
    Gaussian-weighted mean of nearby kept flow (normalised convolution, like RAFT's smooth
    fill-in of textureless interiors), or 0 when nothing kept is near. Static noise or a
    global brightness flicker thus give ~0 flow."""
    a, b = g0.astype(np.float32), g1.astype(np.float32)
    k = 3 if min(a.shape) < 64 else 5
    r0 = cv2.blur(np.abs(b - a), (k, k))
    r1 = cv2.blur(np.abs(_warp(b, flow) - a), (k, k))
    floor = 2.0 + 3.0 * max(haar_sigma(a), haar_sigma(b))
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
    f0, f1 = as_image(frame0), as_image(frame1)
    g0, g1 = gray(f0), gray(f1)
    h, w = g0.shape
    s = _work_scale(h, w)
    flow = _flow_raw(_upscale(g0, s), _upscale(g1, s), method or FLOW_METHOD)
    if s > 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / float(s)
    return _trusted(g0, g1, flow)


def block_factor(frames: np.ndarray) -> int:
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


def deblock(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """(frames at their native resolution, upscale factor): flow on a nearest-upscaled video
    is estimated on the original pixels (its noise is blocky, which OpenCV flow would read
    as texture) and multiplied back by the factor."""
    s = block_factor(frames)
    if s == 1:
        return frames, 1
    h, w = frames.shape[1:3]
    return np.stack([cv2.resize(f, (w // s, h // s), interpolation=cv2.INTER_AREA) for f in frames]), s


def top_mean_magnitude(flow: np.ndarray, frac: float) -> float:
    """Mean of the largest `frac` of the per-pixel flow magnitudes (VBench's get_score)."""
    rad = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).ravel()
    cut = max(1, int(rad.size * frac))  # VBench: int(h*w*frac) (>= 1 here so tiny frames work)
    return float(np.mean(np.partition(rad, rad.size - cut)[rad.size - cut:]))


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
    f0, f1 = as_image(frame0), as_image(frame1)
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

