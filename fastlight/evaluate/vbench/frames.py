"""Inputs of the dimensions: any frames array -> (F, H, W, 3) uint8 RGB, one image -> (H, W, 3),
and the per-image statistics several dimensions share (grey level, noise sigma)."""
from __future__ import annotations

import cv2
import numpy as np

from fastlight.errors import DataError


def as_video(frames, what: str = "video") -> np.ndarray:
    """(F, H, W[, 1|3|4]) uint8, or float in [0, 1] / [0, 255] -> (F, H, W, 3) uint8 RGB."""
    a = np.asarray(frames)
    if a.ndim == 3:  # (F, H, W) grey
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise DataError(f"{what}: expected frames of shape (F, H, W, 3), got {tuple(a.shape)}")
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


def as_image(image, what: str = "image") -> np.ndarray:
    """(H, W[, C]) or (1, H, W, C) -> (H, W, 3) uint8 RGB."""
    a = np.asarray(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim in (2, 3):  # (H, W) grey or (H, W, C): a one-frame video
        a = a[None]
    else:
        raise DataError(f"{what}: expected an (H, W, 3) image, got {tuple(np.asarray(image).shape)}")
    return as_video(a, what)[0]


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def haar_sigma(y: np.ndarray) -> float:
    """Noise sigma from the MAD of the finest Haar diagonal band (Donoho's estimator)."""
    hh, ww = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
    if hh < 2 or ww < 2:
        return 0.0
    q = y[:hh, :ww].astype(np.float32)
    d = (q[0::2, 0::2] - q[0::2, 1::2] - q[1::2, 0::2] + q[1::2, 1::2]) / 2.0
    return float(np.median(np.abs(d)) / 0.6745)

