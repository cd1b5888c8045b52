"""Video and image files, the project's one reader and writer: MP4 (and anything else FFmpeg
decodes) through PyAV, GIF through Pillow, PNG / JPEG through imageio; every write is atomic
(`fastlight.fileio.atomic_path`)."""
from __future__ import annotations

import io
from pathlib import Path

import av
import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, ImageSequence
from tqdm.auto import tqdm

from fastlight.errors import DataError, MissingFileError
from fastlight.fileio import atomic_write_bytes

VIDEO_EXTS = (".mp4", ".gif")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def to_uint8_frames(video: torch.Tensor, upscale: int = 1) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> (F, H*upscale, W*upscale, 3) uint8 (nearest upscaling)."""
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(1, 2, 3, 0)  # (F, H, W, 3)
    if upscale > 1:
        x = x.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
    return x.numpy()


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Write (F, H, W, 3) uint8 frames as .mp4 (H.264 via PyAV) or .gif, atomically."""
    path = Path(path)
    if path.suffix == ".mp4":
        data = _mp4_bytes(np.asarray(frames, dtype=np.uint8), fps)
    elif path.suffix == ".gif":
        data = iio.imwrite("<bytes>", frames, plugin="pillow", extension=".gif", duration=int(1000 / fps), loop=0)
    else:
        raise DataError(f"unsupported video extension {path.suffix!r}; use .mp4 or .gif")
    return atomic_write_bytes(path, data)


def _mp4_bytes(frames: np.ndarray, fps: int) -> bytes:
    """(F, H, W, 3) uint8 -> H.264 (yuv420p) MP4 bytes, encoded by PyAV directly: imageio's pyav writer calls
    gc.collect() on close, ~0.5 s a file in a process holding models (most of an evaluation's decode + score)."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DataError(f"frames must be (F, H, W, 3) uint8, got shape {tuple(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise DataError(f"an H.264 MP4 (yuv420p) needs an even height and width, got {frames.shape[1]}x"
                        f"{frames.shape[2]}; crop or pad the frames to even sizes, or write a .gif")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return buf.getvalue()


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _gif_frames(path: Path, num_frames: int | None, frame_stride: int) -> list[np.ndarray]:
    frames = []
    with Image.open(path) as im:
        for i, fr in enumerate(ImageSequence.Iterator(im)):
            if i % frame_stride == 0:
                frames.append(np.asarray(fr.convert("RGB"), dtype=np.uint8))
            if num_frames is not None and len(frames) >= num_frames:
                break
    return frames


def _av_frames(path: Path, num_frames: int | None, frame_stride: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DataError("no video stream")
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):  # stops decoding once enough frames are read
            if i % frame_stride == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if num_frames is not None and len(frames) >= num_frames:
                break
    return frames


def read_video(path: str | Path, num_frames: int | None = None, frame_stride: int = 1) -> np.ndarray:
    """(F, H, W, 3) uint8 RGB frames of a video file: every `frame_stride`-th frame, the first
    `num_frames` of them (all when None; fewer when the video is shorter). GIF through Pillow,
    anything else through PyAV. A missing file raises FileNotFoundError; an unreadable file or
    one without frames a one-line ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"video {path} does not exist")
    if frame_stride < 1 or (num_frames is not None and num_frames < 1):
        raise DataError(f"num_frames (got {num_frames}) and frame_stride (got {frame_stride}) must be >= 1")
    try:
        read = _gif_frames if path.suffix.lower() == ".gif" else _av_frames
        frames = read(path, num_frames, frame_stride)
    except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError, av.FFmpegError a ValueError
        raise DataError(f"cannot read video {path} ({_first_line(e)}); pass an MP4 or GIF") from None
    if not frames:
        raise DataError(f"video {path} has no frames")
    if len({f.shape for f in frames}) != 1:
        raise DataError(f"video {path} has frames of different sizes")
    return np.stack(frames)


def video_fps(path: str | Path) -> float | None:
    """Frames per second from a video file's metadata (a GIF: 1000 / its mean frame duration in ms),
    None when the file does not say."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".gif":
            with Image.open(path) as im:
                durations = [fr.info.get("duration", 0) or 0 for fr in ImageSequence.Iterator(im)]
            mean_ms = float(np.mean(durations)) if durations else 0.0
            return 1000.0 / mean_ms if mean_ms > 0 else None
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
            return float(rate) if rate else None
    except (OSError, ValueError):
        return None


def read_image_array(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB (grey is repeated, alpha dropped, 16-bit scaled to 8)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"image {path} does not exist")
    try:
        arr = iio.imread(path)
    except Exception as e:  # imageio raises many types for unreadable files
        raise DataError(f"cannot read image {path} ({type(e).__name__}); pass a PNG or JPEG") from None
    if arr.dtype == np.uint16:
        arr = np.rint(arr / 257.0).astype(np.uint8)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise DataError(f"image {path} is not an 8-bit still image ({arr.dtype}, shape {arr.shape}); pass a PNG or JPEG")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return np.ascontiguousarray(arr[..., :3])


def read_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """A first-frame image -> (3, H, W) in [-1, 1]; checks the size against the model's."""
    arr = read_image_array(path)
    if size is not None and arr.shape[:2] != (size, size):
        raise DataError(f"image {path} is {arr.shape[1]}x{arr.shape[0]} but this model needs {size}x{size}; resize it")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1


def write_image(path: str | Path, image: torch.Tensor) -> Path:
    """(3, H, W) in [-1, 1] -> PNG, atomically."""
    return atomic_write_bytes(path, iio.imwrite("<bytes>", to_uint8_frames(image[:, None])[0], extension=".png"))


def grid(videos: torch.Tensor, ncols: int, pad: int = 1) -> torch.Tensor:
    """(N, 3, F, H, W) -> one (3, F, rows*(H+pad)-pad, ncols*(W+pad)-pad) video."""
    N, C, F, H, W = videos.shape
    nrows = (N + ncols - 1) // ncols
    out = torch.ones(C, F, nrows * (H + pad) - pad, ncols * (W + pad) - pad)
    for i in range(N):
        r, c = divmod(i, ncols)
        out[:, :, r * (H + pad): r * (H + pad) + H, c * (W + pad): c * (W + pad) + W] = videos[i]
    return out


def video_files(folder: str | Path) -> list[Path]:
    """The *.mp4 / *.gif files of `folder`, sorted by name; a one-line ValueError when it is not a
    folder or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"not a folder of videos: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if not files:
        raise DataError(f"no .mp4/.gif videos in {folder}")
    return files


def read_videos(files: list[Path], progress: bool = False) -> tuple[list[np.ndarray | None], dict[str, str]]:
    """Each file's frames (None where it cannot be read) and {file name: why} for those; a one-line
    ValueError naming every file when none can be read (a folder of broken files is not a result).
    progress: a bar on a terminal (none when stderr is not one)."""
    frames, unreadable = [], {}
    for p in tqdm(files, desc="reading videos", unit="video", leave=False, disable=None if progress else True):
        try:
            frames.append(read_video(p))
        except ValueError as e:
            frames.append(None)
            unreadable[p.name] = str(e)
    if files and len(unreadable) == len(files):
        names = ", ".join(unreadable)
        raise DataError(f"none of the {len(files)} video(s) in {files[0].parent} can be read ({names}); "
                        "pass a folder of MP4 or GIF files")
    return frames, unreadable
