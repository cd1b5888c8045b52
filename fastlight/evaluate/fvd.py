"""Frechet distances: the generic Gaussian Frechet distance and FVD (StyleGAN-V protocol).

**Frechet distance** between N(mu1, S1) and N(mu2, S2):

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

computed in float64 with `scipy.linalg.sqrtm` (as FID/FVD reference code does). ShapesBench
reuses it for its oracle-feature distance.

**FVD** (Frechet Video Distance) as StyleGAN-V computes it (Skorokhodov et al. 2022, whose
PyTorch port was checked against the original TensorFlow FVD):
  * the feature network is the Kinetics-400 I3D exported to TorchScript by the StyleGAN-V
    authors, `i3d_torchscript.pt` (https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt,
    referenced from github.com/universome/stylegan-v, src/metrics/frechet_video_distance.py);
    no download happens here: the user supplies the file;
  * features = the 400 raw logits before the softmax (`return_features=True`);
  * clips of **16 frames**: a video with F >= 16 frames gives its first 16 frames (StyleGAN-V
    draws 16 consecutive frames; we take the first window so the score is deterministic); a
    shorter video is padded by repeating its last frame (a freeze), so FVD numbers of short
    videos are comparable only to numbers computed with the same padding (FVD_16 of 8-frame
    Shapes clips measures 8 real frames + 8 frozen ones);
  * frames are resized so the shorter side is 224 (bilinear, no antialias, `align_corners=False`),
    centre-cropped to 224 x 224, and mapped from [0, 1] to [-1, 1]; the detector is then called
    with `rescale=False, resize=False` (our own resize replaces its internal one);
  * feature statistics (mean, covariance with N - 1) in float64.

**The detector is trusted input.** `load_i3d` runs `torch.jit.load` on the file the user names: a
TorchScript archive is code (its graph runs here), so load only a file you chose, e.g. the StyleGAN-V
one above. Nothing else is accepted (a `torch.save` pickle is refused, never unpickled); a
safetensors file would need an I3D architecture in this project, which it does not have.

**Not run here.** No test of this project has run the real StyleGAN-V I3D (no weights on the test
machine): the tests run `fastlight fvd` end to end with a small scripted stand-in detector. Every
result of `fvd_folders` says so (`NOT_RUN_HERE`) until a test runs the real detector.

`fastlight fvd REAL_DIR GENERATED_DIR --detector i3d_torchscript.pt [--out fvd.json]`
(`fvd_folders`): every readable *.mp4 / *.gif of each folder, unreadable ones named and skipped,
a folder with fewer than 2 readable videos an error.

Video inputs (`fvd`, `preprocess`): a float torch tensor (N, 3, F, H, W) in [-1, 1] (the
project's layout), or uint8 frames (N, F, H, W, 3) as a numpy array / torch tensor / list of
(F, H, W, 3) arrays (what `fastlight.data.video.read_video` returns).
"""
from __future__ import annotations

import inspect
import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from tqdm.auto import tqdm

from fastlight.data.video import read_videos, video_files
from fastlight.errors import DataError, InputError, MissingFileError
from fastlight.fileio import atomic_write_json, sha256_file

FVD_NUM_FRAMES = 16
FVD_RESOLUTION = 224
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
I3D_HELP = (
    "supply the StyleGAN-V I3D detector `i3d_torchscript.pt` (the Kinetics-400 I3D exported to "
    f"TorchScript by the StyleGAN-V authors, github.com/universome/stylegan-v; download: {I3D_URL}) "
    "and pass its path"
)
NOT_RUN_HERE = ("not run here: no test of this project has run the StyleGAN-V I3D; the command is tested end to "
                "end with a stand-in detector, so this number is as good as the detector you supplied")


# ---- Frechet distance -------------------------------------------------------------------------
def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mu (D,), sigma (D, D)) in float64; sigma uses N - 1 (np.cov)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    if f.shape[0] < 2:
        raise InputError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2)).
    If the product's square root is not finite (singular covariances, e.g. fewer samples than
    dimensions), `eps` I is added to both covariances and it is taken again. A square root with
    a small imaginary part (round-off) keeps its real part. Round-off below zero is clipped to 0.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"shapes do not match: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}; "
            "need mu (D,) and sigma (D, D) for both"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are expected (few samples, redundant features)
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    d2 = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
    return max(d2, 0.0)


def frechet_distance_features(features_a, features_b) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (N_a, D), (N_b, D)."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


# ---- I3D ------------------------------------------------------------------------------------------
def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load the user-supplied StyleGAN-V I3D TorchScript file (map_location cpu, then `device`).

    Trusted input: a TorchScript archive is code that runs here (module doc); only `torch.jit.load`
    is tried, so a pickle (`torch.save`) is refused, never unpickled."""
    if path is None:
        raise MissingFileError(f"no I3D detector given: {I3D_HELP}")
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"I3D detector {p} not found: {I3D_HELP}")
    try:
        with warnings.catch_warnings():  # torch >= 2.10 marks torch.jit deprecated; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(p), map_location="cpu")
    except Exception as e:  # torch raises RuntimeError / ValueError / pickle errors for other files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{p} is not a TorchScript file ({reason[:160]}); {I3D_HELP}") from None
    return model.eval().to(device)


def _as_unit_float(videos) -> list[torch.Tensor]:
    """Any supported video input -> list of (3, F, H, W) float32 tensors in [0, 1]."""
    if isinstance(videos, torch.Tensor) and videos.is_floating_point():
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise DataError(f"float videos must be (N, 3, F, H, W) in [-1, 1], got shape {tuple(videos.shape)}")
        return [((v.detach().float().cpu().clamp(-1, 1) + 1) / 2) for v in videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        videos = list(videos)
    out = []
    for v in videos:
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
            raise DataError(
                f"uint8 videos must be (F, H, W, 3) each, got {a.shape} {a.dtype}; "
                "or pass one float tensor (N, 3, F, H, W) in [-1, 1]"
            )
        out.append(torch.from_numpy(a.copy()).permute(3, 0, 1, 2).float() / 255.0)
    return out


def _fit_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(3, F, H, W) -> (3, num_frames, H, W): first num_frames frames, or the last frame repeated."""
    f = video.shape[1]
    if f >= num_frames:
        return video[:, :num_frames]
    pad = video[:, -1:].expand(-1, num_frames - f, -1, -1)
    return torch.cat([video, pad], dim=1)


def _resize_crop(video: torch.Tensor, resolution: int) -> torch.Tensor:
    """(3, T, H, W) -> (3, T, R, R): shorter side to R (bilinear), centre crop."""
    _, _, h, w = video.shape
    scale = resolution / min(h, w)
    size = (resolution, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), resolution)
    # interpolate treats (3, T, H, W) as a batch of 3 "images" with T channels: spatial only
    x = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
    top, left = (x.shape[2] - resolution) // 2, (x.shape[3] - resolution) // 2
    return x[:, :, top:top + resolution, left:left + resolution]


def preprocess(videos, num_frames: int = FVD_NUM_FRAMES, resolution: int = FVD_RESOLUTION) -> torch.Tensor:
    """Videos -> the detector's input (N, 3, num_frames, R, R) float32 in [-1, 1] (see module doc)."""
    clips = [_resize_crop(_fit_frames(v, num_frames), resolution) * 2 - 1 for v in _as_unit_float(videos)]
    if not clips:
        raise InputError("no videos given")
    return torch.stack(clips).contiguous()


def _detector_kwargs(detector) -> dict:
    """rescale/resize off, raw features on, for the arguments the detector's forward has."""
    wanted = {"rescale": False, "resize": False, "return_features": True}
    try:
        names = {a.name for a in detector.forward.schema.arguments}
    except AttributeError:  # a plain nn.Module (not scripted): pass what its signature names
        names = set(inspect.signature(detector.forward).parameters)
    return {k: v for k, v in wanted.items() if k in names}


def i3d_features(videos, detector, batch_size: int = 16, device: str | torch.device = "cpu",
                 num_frames: int = FVD_NUM_FRAMES, resolution: int = FVD_RESOLUTION,
                 progress: bool = False) -> np.ndarray:
    """Detector features (N, D) float64 of videos, preprocessed batch by batch (memory stays small)."""
    units = _as_unit_float(videos)
    if not units:
        raise InputError("no videos given")
    kwargs = _detector_kwargs(detector)
    feats = []
    starts = tqdm(range(0, len(units), batch_size), desc="i3d", leave=False, disable=not progress)
    with torch.no_grad():
        for i in starts:
            x = torch.stack([_resize_crop(_fit_frames(v, num_frames), resolution) * 2 - 1 for v in units[i:i + batch_size]])
            try:
                y = detector(x.to(device), **kwargs)
            except RuntimeError as e:  # the user's detector refused the clip: say what it was given
                reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                raise InputError(f"the detector failed on a {tuple(x.shape)} batch in [-1, 1] ({reason}); "
                                 f"{I3D_HELP}") from None
            if not isinstance(y, torch.Tensor) or y.ndim < 2 or y.shape[0] != x.shape[0]:
                raise InputError(f"the detector returned {type(y).__name__} {tuple(getattr(y, 'shape', ()))}, not "
                                 f"one feature vector per video ({x.shape[0]}, D); {I3D_HELP}")
            feats.append(y.detach().reshape(y.shape[0], -1).double().cpu().numpy())
    return np.concatenate(feats)


def fvd(videos_a, videos_b, i3d_path: str | Path, batch_size: int = 16, device: str | torch.device = "cpu",
        num_frames: int = FVD_NUM_FRAMES, resolution: int = FVD_RESOLUTION, progress: bool = False) -> float:
    """FVD between two sets of videos (each >= 2 videos) with the StyleGAN-V I3D at `i3d_path`."""
    detector = load_i3d(i3d_path, device)
    fa = i3d_features(videos_a, detector, batch_size, device, num_frames, resolution, progress)
    fb = i3d_features(videos_b, detector, batch_size, device, num_frames, resolution, progress)
    return frechet_distance_features(fa, fb)


def _readable(folder, side: str) -> tuple[list[np.ndarray], dict[str, str]]:
    frames, unreadable = read_videos(video_files(folder))
    kept = [f for f in frames if f is not None]
    if len(kept) < 2:
        raise DataError(f"{side} folder {folder}: {len(kept)} readable video(s), FVD needs at least 2 per side")
    return kept, unreadable


def fvd_folders(real_dir, generated_dir, detector_path, batch_size: int = 16, device: str | torch.device = "cpu",
                out_json=None) -> dict:
    """`fastlight fvd`: FVD_16 between the videos of two folders with the user's TorchScript detector.

    Returns {"fvd", "num_real", "num_generated", "num_frames", "resolution", "detector", "detector_sha256",
    "unreadable": {"real": {name: why}, "generated": {...}}, "status": NOT_RUN_HERE}; written atomically
    to out_json when given (nothing is written when anything fails)."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be >= 1")
    real, bad_real = _readable(real_dir, "real")
    gen, bad_gen = _readable(generated_dir, "generated")
    detector = load_i3d(detector_path, device)
    fa = i3d_features(real, detector, batch_size, device)
    fb = i3d_features(gen, detector, batch_size, device)
    if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
        raise InputError(f"the detector {detector_path} returned non-finite features; {I3D_HELP}")
    res = {"fvd": frechet_distance_features(fa, fb), "num_real": len(real), "num_generated": len(gen),
           "num_frames": FVD_NUM_FRAMES, "resolution": FVD_RESOLUTION, "feature_dim": int(fa.shape[1]),
           "real": str(real_dir), "generated": str(generated_dir), "detector": str(detector_path),
           "detector_sha256": sha256_file(Path(detector_path)), "unreadable": {"real": bad_real, "generated": bad_gen},
           "status": NOT_RUN_HERE}
    if out_json:
        atomic_write_json(out_json, res)
    return res


__all__: Sequence[str] = (
    "FVD_NUM_FRAMES", "FVD_RESOLUTION", "I3D_URL", "NOT_RUN_HERE", "feature_stats", "frechet_distance",
    "frechet_distance_features", "load_i3d", "preprocess", "i3d_features", "fvd", "fvd_folders",
)
