"""Subject / background consistency and their image-to-video variants, by VBench's formulas over
weight-free frame features: a HOG pyramid + Lab thumbnail instead of DINO, an HSV histogram +
colour layout instead of CLIP / DreamSim (proxies)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from fastlight.evaluate.vbench.dimensions import need_frames
from fastlight.evaluate.vbench.frames import as_image, as_video

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
    img = cv2.resize(as_image(frame), (_FEAT, _FEAT), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
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
    img = cv2.resize(as_image(frame), (_FEAT, _FEAT), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    hist = np.sqrt(hist / max(hist.sum(), 1.0))
    layout = cv2.resize(_lab(img.astype(np.float32) / 255.0), (4, 4), interpolation=cv2.INTER_AREA).ravel()
    return _unit(np.concatenate([_unit(hist), _unit(layout)]))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return max(0.0, float(np.dot(_unit(a), _unit(b))))


def consistency_sum(feats: list[np.ndarray]) -> tuple[float, int]:
    """VBench's per-video numerator and denominator: (sum over frames i >= 1 of
    (cos(f_i-1, f_i) + cos(f_0, f_i)) / 2, number of such frames)."""
    total = 0.0
    for i in range(1, len(feats)):
        total += (_cos(feats[i - 1], feats[i]) + _cos(feats[0], feats[i])) / 2.0
    return total, len(feats) - 1


def subject_consistency(frames: np.ndarray) -> float:
    """VBench subject consistency of one video over weight-free subject features (proxy)."""
    frames = as_video(frames)
    need_frames(frames, "subject_consistency")
    total, n = consistency_sum([subject_features(f) for f in frames])
    return total / n


def background_consistency(frames: np.ndarray) -> float:
    """VBench background consistency of one video over weight-free background features (proxy)."""
    frames = as_video(frames)
    need_frames(frames, "background_consistency")
    total, n = consistency_sum([background_features(f) for f in frames])
    return total / n


def _i2v(frames: np.ndarray, image: np.ndarray, feat, weights: tuple[float, float, float], dim: str) -> float:
    frames = as_video(frames)
    need_frames(frames, dim)
    image = as_image(image, f"{dim} image")
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

