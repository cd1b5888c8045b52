"""`evaluate_folder`: the VBench-style dimensions of every MP4 / GIF in a folder (read with
`fastlight.data.video`), with the built-in scorers or the official VBench package.

Nothing falls back silently: an unreadable video is listed by name ("skipped", with the reason in
"unreadable") and a folder where none can be read is an error; conditioning images are paired with
videos by file stem only (a mismatch is an error naming the stems); a video whose file gives no fps
is scored at `ASSUMED_FPS` and named under "fps_assumed" (fps only enters dynamic degree, and the
re-encoding of GIFs for the official backend)."""
from __future__ import annotations

import sys
from pathlib import Path

from fastlight.data.video import IMAGE_EXTS, read_image_array, read_videos, video_files, video_fps
from fastlight.errors import DataError, InputError
from fastlight.evaluate.vbench.dimensions import check_dims
from fastlight.evaluate.vbench.official import NOT_RUN_HERE, evaluate_with_vbench
from fastlight.evaluate.vbench.score import score_videos
from fastlight.fileio import atomic_write_json

BACKENDS = ("builtin", "vbench")
ASSUMED_FPS = 8.0  # VBench's own sampling rate; stated in the output wherever it is used


def _names(items) -> str:
    items = list(items)
    return ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")


def pair_images(video_files: list[Path], images) -> list[Path]:
    """The conditioning image of each video, the one with the video's file stem (a.png for a.mp4).
    A one-line ValueError names the stems without a partner (either side) or with two images."""
    folder = Path(images)
    if not folder.is_dir():
        raise InputError(f"images must be a folder of PNG/JPG files, got {images}")
    imgs = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    by_stem: dict[str, list[Path]] = {}
    for p in imgs:
        by_stem.setdefault(p.stem, []).append(p)
    stems = {v.stem for v in video_files}
    twice = [s for s in sorted(stems) if len(by_stem.get(s, [])) > 1]
    no_image = [v.name for v in video_files if v.stem not in by_stem]
    no_video = [p.name for p in imgs if p.stem not in stems]
    if twice or no_image or no_video:
        parts = ([f"no image for {_names(no_image)}"] if no_image else []) + \
                ([f"no video for {_names(no_video)}"] if no_video else []) + \
                ([f"two images for {_names(twice)}"] if twice else [])
        raise DataError(f"images in {folder} do not match the videos by name ({'; '.join(parts)}): "
                        "name each first frame after its video, e.g. a.png for a.mp4")
    return [by_stem[v.stem][0] for v in video_files]


def resolve_fps(files: list[Path], fps: float | None) -> tuple[list[float], list[str]]:
    """(fps of each video, names of the videos scored at ASSUMED_FPS because the file gives none):
    `fps` when given, else each file's own."""
    if fps is not None:
        if not fps > 0:
            raise InputError(f"--fps {fps} must be > 0")
        return [float(fps)] * len(files), []
    out, assumed = [], []
    for p in files:
        f = video_fps(p)
        if f is None or not f > 0:
            assumed.append(p.name)
            f = ASSUMED_FPS
        out.append(float(f))
    return out, assumed


def evaluate_folder(folder, images=None, fps: float | None = None, dims=None, backend: str = "builtin",
                    out_json=None, progress: bool = True, static_filter: bool = True) -> dict:
    """Score every *.mp4 / *.gif of `folder` (sorted by name).

    images: a folder of conditioning PNG/JPGs for the i2v dimensions, one per video with its stem.
    fps: None = each file's own (ASSUMED_FPS, named under "fps_assumed", when the file gives none).
    static_filter: False scores temporal flickering on every video (then exact, module
    `dimensions`). Unreadable or empty files are listed under "skipped" (reasons under
    "unreadable") and not scored; none readable is a ValueError. Returns score_videos' dict plus
    "videos", "skipped", "num_skipped", "unreadable", "fps", "fps_assumed", "backend", "folder"
    (and "status" for the official backend); written atomically to out_json when given.
    """
    folder = Path(folder)
    files = video_files(folder)
    image_files = pair_images(files, images) if images is not None else None
    dims = check_dims(dims, image_files is not None)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (use 'builtin' or 'vbench')")
    fps_all, assumed = resolve_fps(files, fps)
    frames, unreadable = read_videos(files, progress=progress)
    keep = [i for i, f in enumerate(frames) if f is not None]
    if unreadable:
        print(f"vbench: skipped {len(unreadable)} unreadable/empty video(s): {', '.join(unreadable)}", file=sys.stderr)
    kept = [files[i] for i in keep]
    kept_imgs = [image_files[i] for i in keep] if image_files is not None else None
    fpss = [fps_all[i] for i in keep]
    names = [p.name for p in kept]
    if backend == "vbench":
        res = evaluate_with_vbench(kept, kept_imgs, dims, fpss)
    else:
        imgs = [read_image_array(p) for p in kept_imgs] if kept_imgs is not None else None
        res = score_videos([frames[i] for i in keep], imgs, fps=fpss, dims=dims, progress=progress, names=names,
                           static_filter=static_filter)
    res.update({"videos": names, "skipped": list(unreadable), "num_skipped": len(unreadable),
                "unreadable": unreadable, "fps": dict(zip(names, fpss)),
                "fps_assumed": [n for n in assumed if n in names], "assumed_fps": ASSUMED_FPS,
                "backend": backend, "folder": str(folder)})
    if backend == "vbench":
        res["status"] = NOT_RUN_HERE
    if out_json:
        atomic_write_json(out_json, res)
    return res
