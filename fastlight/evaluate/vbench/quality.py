"""Imaging quality (a weight-free stand-in for MUSIQ-SPAQ / 100: proxy) and aesthetic quality
(n/a without the LAION aesthetic head)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from fastlight.evaluate.vbench.dimensions import need_frames
from fastlight.evaluate.vbench.frames import as_image, as_video, haar_sigma


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
    img = as_image(frame)
    h, w = img.shape[:2]
    if max(h, w) > 512:  # VBench's default 'longer' preprocessing for MUSIQ
        s = 512.0 / max(h, w)
        img = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    y = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    sigma = haar_sigma(y)  # per-pixel noise (finest scale only, as a viewer sees it)
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
    frames = as_video(frames)
    need_frames(frames, "imaging_quality")
    return float(np.mean([imaging_quality_components(f)["quality"] for f in frames]))


def aesthetic_quality(frames: np.ndarray) -> None:
    """n/a without weights (VBench uses the LAION aesthetic head on CLIP ViT-L/14)."""
    return None

