"""The report's side-by-side animation: every configuration's ShapesBench grid GIF stacked, each
under a label strip, the shared ideal clips shown once."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fastlight.data.video import read_video, video_fps, write_video
from fastlight.errors import InputError

LABEL_STRIP_PX = 18
DEFAULT_FPS = 4.0  # ShapesBench's grids; used when a GIF does not say


def split_grid(frames: np.ndarray, white: int = 245) -> tuple[np.ndarray, np.ndarray] | None:
    """A ShapesBench grid.gif (F, H, W, 3) is two rows (generated on top, the ideal clips below) with a
    white band between them; returns (top, bottom) when such a band splits it into equal halves."""
    F, H = frames.shape[:2]
    is_white = frames.min(axis=(0, 2, 3)) >= white  # (H,) rows white in every frame
    y = 0
    while y < H:
        if not is_white[y]:
            y += 1
            continue
        a = y
        while y < H and is_white[y]:
            y += 1
        if a > 0 and a == H - y and y - a < a:
            return frames[:, :a], frames[:, y:]
    return None


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def label_width(text: str, height: int = LABEL_STRIP_PX) -> int:
    """Pixels a label strip needs to show `text` whole."""
    return int(math.ceil(_font(height - 6).getlength(text))) + 8


def label_strip(text: str, width: int, height: int = LABEL_STRIP_PX) -> np.ndarray:
    """(height, width, 3) uint8: dark text on a light strip."""
    img = Image.new("RGB", (width, height), (235, 235, 235))
    ImageDraw.Draw(img).text((4, 2), text, fill=(20, 20, 20), font=_font(height - 6))
    return np.asarray(img)


def _pad_to(frames: np.ndarray, num_frames: int, width: int) -> np.ndarray:
    F, H, W, _ = frames.shape
    if W < width:
        frames = np.concatenate([frames, np.full((F, H, width - W, 3), 255, np.uint8)], axis=2)
    if F < num_frames:
        frames = np.concatenate([frames, np.repeat(frames[-1:], num_frames - F, axis=0)])
    return frames[:num_frames]


def _same_ideal(halves: list, tol: float) -> bool:
    """Every grid split in two, and the ideal (bottom) halves equal within `tol` grey levels."""
    if not all(h is not None for h in halves) or len({h[1].shape for h in halves}) != 1:
        return False
    ref = halves[0][1].astype(np.float32)
    return all(float(np.abs(h[1][:len(ref)].astype(np.float32) - ref[:len(h[1])]).mean()) <= tol for h in halves)


def side_by_side_gif(items: Sequence[tuple[str, str]], path: str | Path, ideal_tol: float = 8.0) -> dict:
    """Stack the grid GIFs `items` = [(label, gif path), ...] vertically, a label strip above each.

    When every grid splits into generated / ideal halves and the ideal halves agree (mean abs
    difference <= ideal_tol, GIF palettes differ), only the generated halves are stacked and the ideal
    clips are shown once at the bottom. Returns {path, num_frames, shape, ideal_once, fps}."""
    if not items:
        raise InputError("no grid GIFs to combine")
    vids = [read_video(p) for _, p in items]
    halves = [split_grid(v) for v in vids]
    ideal_once = _same_ideal(halves, ideal_tol)
    parts = [(label, h[0] if ideal_once else v) for (label, _), h, v in zip(items, halves, vids)]
    if ideal_once:
        parts.append(("ideal clips (the world's rendering of the same cases)", halves[0][1]))
    F = max(p.shape[0] for _, p in parts)
    W = max(max(p.shape[2] for _, p in parts), max(label_width(label) for label, _ in parts))
    blocks = []
    for label, p in parts:
        strip = np.repeat(label_strip(label, W)[None], F, axis=0)
        blocks += [strip, _pad_to(p, F, W)]
    frames = np.ascontiguousarray(np.concatenate(blocks, axis=1))
    fps = max(1, round(video_fps(items[0][1]) or DEFAULT_FPS))
    write_video(path, frames, fps)
    return {"path": str(path), "num_frames": int(F), "shape": list(frames.shape), "ideal_once": bool(ideal_once),
            "fps": fps}




def _scale_to_width(frames: np.ndarray, width: int) -> np.ndarray:
    """(F, H, W, 3) resized (bilinear) so W == width, the aspect kept."""
    F, H, W, _ = frames.shape
    if W == width:
        return frames
    size = (width, max(1, round(H * width / W)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])


def rows_gif(rows: Sequence[tuple[str, Sequence[str | Path]]], path: str | Path, max_videos: int = 4,
             max_width_px: int = 1024, gap_px: int = 2) -> dict:
    """One animation of a run's rows side by side: row r is `rows[r]`'s first `max_videos` videos in a line
    (white gaps of `gap_px`), under its label strip; the rows of one evaluation share prompts and noise, so
    columns compare. Videos are scaled so a line is at most `max_width_px` wide (never up); shorter clips
    hold their last frame. Returns {path, num_frames, shape, fps, videos_per_row}."""
    rows = [(label, list(videos)[:max_videos]) for label, videos in rows if videos]
    if not rows or max_videos < 1:
        raise InputError("no videos to put side by side (evaluate the run with videos first)")
    clips = [[read_video(p) for p in videos] for _, videos in rows]
    n = max(len(c) for c in clips)
    W = min(clips[0][0].shape[2], max(16, (max_width_px - gap_px * (n - 1)) // n))
    F = max(c.shape[0] for cs in clips for c in cs)
    scaled = [[_pad_to(_scale_to_width(c, W), F, W) for c in cs] for cs in clips]
    H = min(c.shape[1] for cs in scaled for c in cs)  # one evaluation: one aspect ratio
    width = W * n + gap_px * (n - 1)
    blocks = []
    for (label, _), cs in zip(rows, scaled):
        line = np.full((F, H, width, 3), 255, np.uint8)
        for j, c in enumerate(cs):
            line[:, :, j * (W + gap_px):j * (W + gap_px) + W] = c[:, :H]
        blocks += [np.repeat(label_strip(label, width)[None], F, axis=0), line]
    frames = np.ascontiguousarray(np.concatenate(blocks, axis=1))  # (F, rows x (strip + H), width, 3)
    fps = max(1, round(video_fps(rows[0][1][0]) or DEFAULT_FPS))
    write_video(path, frames, fps)
    return {"path": str(path), "num_frames": int(F), "shape": list(frames.shape), "fps": fps, "videos_per_row": n}
