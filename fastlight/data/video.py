"""Video and image files: write MP4/GIF atomically (PyAV / imageio), read a first-frame image."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def to_uint8_frames(video: torch.Tensor, upscale: int = 1) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> (F, H*upscale, W*upscale, 3) uint8 (nearest upscaling)."""
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(1, 2, 3, 0)  # (F, H, W, 3)
    if upscale > 1:
        x = x.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
    return x.numpy()


def _tmp_name(path: Path) -> Path:
    # keep the extension last so imageio picks the right writer
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write (F, H, W, 3) uint8 frames as .mp4 (H.264 via PyAV) or .gif, atomically."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        if path.suffix == ".mp4":
            iio.imwrite(tmp, frames, plugin="pyav", codec="libx264", fps=fps, out_pixel_format="yuv420p")
        elif path.suffix == ".gif":
            iio.imwrite(tmp, frames, plugin="pillow", duration=int(1000 / fps), loop=0)
        else:
            raise ValueError(f"unsupported video extension {path.suffix!r}; use .mp4 or .gif")
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_video(path: str | Path) -> np.ndarray:
    """(F, H, W, 3) uint8 from an MP4 or GIF."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video {path} does not exist")
    arr = iio.imread(path, plugin="pyav" if path.suffix == ".mp4" else None)
    if arr.ndim == 3:
        arr = arr[None]
    return arr[..., :3]


def read_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """A first-frame image -> (3, H, W) in [-1, 1]; checks the size against the model's."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        arr = iio.imread(path)
    except Exception as e:  # imageio raises many types for unreadable files
        raise ValueError(f"cannot read image {path} ({type(e).__name__}); pass a PNG or JPEG") from None
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3]
    if size is not None and arr.shape[:2] != (size, size):
        raise ValueError(f"image {path} is {arr.shape[1]}x{arr.shape[0]} but this model needs {size}x{size}; resize it")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1


def write_image(path: str | Path, image: torch.Tensor) -> Path:
    """(3, H, W) in [-1, 1] -> PNG, atomically."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    iio.imwrite(tmp, to_uint8_frames(image[:, None])[0])
    tmp.replace(path)
    return path


def grid(videos: torch.Tensor, ncols: int, pad: int = 1) -> torch.Tensor:
    """(N, 3, F, H, W) -> one (3, F, rows*(H+pad)-pad, ncols*(W+pad)-pad) video."""
    N, C, F, H, W = videos.shape
    nrows = (N + ncols - 1) // ncols
    out = torch.ones(C, F, nrows * (H + pad) - pad, ncols * (W + pad) - pad)
    for i in range(N):
        r, c = divmod(i, ncols)
        out[:, :, r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = videos[i]
    return out
