"""`evaluate_folder`: the VBench-style dimensions of every MP4 / GIF in a folder (read with
`fastlight.data.video`), with the built-in scorers or the official VBench package."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fastlight.data.video import IMAGE_EXTS, VIDEO_EXTS, read_image_array, read_video, video_fps
from fastlight.errors import DataError, InputError
from fastlight.evaluate.vbench.dimensions import check_dims
from fastlight.evaluate.vbench.official import evaluate_with_vbench
from fastlight.evaluate.vbench.score import score_videos
from fastlight.fileio import atomic_write_json

BACKENDS = ("builtin", "vbench")


def _pair_images(video_files: list[Path], images) -> list[Path]:
    """The conditioning image of each video: matched by stem when every video has one, else by
    sorted order (the counts must match)."""
    folder = Path(images)
    if not folder.is_dir():
        raise InputError(f"images must be a folder of PNG/JPG files, got {images}")
    imgs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if len(imgs) != len(video_files):
        raise DataError(f"{len(video_files)} video(s) in the folder but {len(imgs)} image(s) in {folder}: "
                        "counts must match")
    by_stem = {p.stem: p for p in imgs}
    if all(v.stem in by_stem for v in video_files):
        return [by_stem[v.stem] for v in video_files]
    return imgs  # sorted order


def _read_or_none(path: Path) -> np.ndarray | None:
    """The video's frames, or None when the file cannot be read or has no frames."""
    try:
        frames = read_video(path)
    except ValueError:
        return None
    return frames if frames.shape[1] > 0 and frames.shape[2] > 0 else None


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
        raise InputError(f"not a folder of videos: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if not files:
        raise DataError(f"no .mp4/.gif videos in {folder}")
    image_files = _pair_images(files, images) if images is not None else None
    dims = check_dims(dims, image_files is not None)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (use 'builtin' or 'vbench')")

    vids, fpss, kept, kept_imgs, skipped = [], [], [], [], []
    for i, p in tqdm(list(enumerate(files)), desc="reading videos", unit="video", disable=not progress):
        frames = _read_or_none(p)
        if frames is None:
            skipped.append(p.name)
            continue
        vids.append(frames)
        fpss.append(float(fps) if fps else float(video_fps(p) or 8.0))
        kept.append(p)
        if image_files is not None:
            kept_imgs.append(image_files[i])
    if skipped:
        print(f"vbench: skipped {len(skipped)} unreadable/empty video(s): {', '.join(skipped)}", file=sys.stderr)

    names = [p.name for p in kept]
    if backend == "vbench":
        res = evaluate_with_vbench(kept, kept_imgs if image_files is not None else None, dims, fpss)
    else:
        imgs = [read_image_array(p) for p in kept_imgs] if image_files is not None else None
        res = score_videos(vids, imgs, fps=fpss, dims=dims, progress=progress, names=names)
    res.update({"videos": names, "skipped": skipped, "num_skipped": len(skipped), "backend": backend,
                "folder": str(folder)})
    if out_json:
        atomic_write_json(out_json, res)
    return res
