"""Synthetic videos with known motion for the VBench-style dimension tests (uint8 (F, H, W, 3) RGB)."""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np


def texture(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random colour texture (H, W, 3) uint8 spanning the full range."""
    r = np.random.default_rng(seed)
    t = r.random((max(2, h // 4 + 2), max(2, w // 4 + 2), 3)).astype(np.float32)
    t = cv2.resize(t, (w, h), interpolation=cv2.INTER_CUBIC)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return (t * 255).astype(np.uint8)


def shifted_texture(size: int, k: float, n: int = 8, seed: int = 0) -> np.ndarray:
    """A smooth random texture under a camera panning right: content moves k px left per frame."""
    pad = int(math.ceil(abs(k) * n)) + 4
    big = texture(size + pad, size + pad, seed)
    out = []
    for i in range(n):
        m = np.float32([[1, 0, -k * i], [0, 1, 0]])
        out.append(cv2.warpAffine(big, m, (big.shape[1], big.shape[0]), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)[:size, :size])
    return np.stack(out)


def disk_clip(size: int, positions: Sequence[float], bg=(31, 31, 31), col=(235, 31, 31), r: float = 4.0,
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


def upscale_video(v: np.ndarray, s: int) -> np.ndarray:
    """Nearest-neighbour upscale of every frame by s (blocky, like `to_uint8_frames(..., upscale)`)."""
    return np.stack([cv2.resize(f, (f.shape[1] * s, f.shape[0] * s), interpolation=cv2.INTER_NEAREST) for f in v])

