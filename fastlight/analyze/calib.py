"""Calibration sets for Stage I: a fixed list of (x0, eps, s, cond) batches.

Every block is scored on the SAME triples (common random numbers, DESIGN.md section 1):
the score of block b is a paired difference err(skip b) - err(no skip) on identical
(x0, eps, s), so the noise of the draw cancels and a few dozen samples separate blocks.
A set is a pure function of its seed and size, so the same call gives the same tensors on
every run and machine.

    calib = model_calibration(model, num_samples=64, seed=0)            # what the model folder names
    calib = source_calibration({"_component_": "latents", "path": "SHARDS"}, 64, seed=0, shift=5.0)
    calib = latent_calibration(x0, cond, num_samples=64, seed=0, shift=3.0)  # any latents + cond

From a data source (fastlight/data/source.py): its `calibration` stream, never a training batch;
x0 (B, C, F, H, W), text, image (TI2V) and extra as the source gives them, s = flow.sample_s(B,
shift) with the model's shift (its fastlight.json `shift`, default 3.0): how the model was trained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from fastlight.analyze.defaults import model_defaults
from fastlight.data.source import build_source, stream_generator
from fastlight.diffusion.flow import sample_s
from fastlight.errors import DataError, InputError, MissingFileError, ModelError
from fastlight.fileio import read_safetensors
from fastlight.models.denoiser import Cond, Denoiser

DEFAULT_SHIFT = 3.0


class CalibBatch(NamedTuple):
    """One calibration batch. x0, eps: (B, C, F, H, W); s: (B,); cond: batch B."""

    x0: torch.Tensor
    eps: torch.Tensor
    s: torch.Tensor
    cond: Cond


@dataclass
class CalibrationSet:
    """A fixed list of calibration batches plus how they were drawn (`info`, JSON-able)."""

    batches: list[CalibBatch]
    info: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[CalibBatch]:
        return iter(self.batches)

    def __len__(self) -> int:  # number of batches
        return len(self.batches)

    @property
    def num_samples(self) -> int:
        return sum(b.x0.shape[0] for b in self.batches)


def _check_counts(num_samples: int, batch_size: int, what: str) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise InputError(f"calibration size must be an integer, got {num_samples!r}")
    if num_samples < 1:
        raise InputError(f"calibration set is empty: {what} num_samples={num_samples}; pass --calib N with N >= 1 (e.g. 64)")
    if batch_size < 1:
        raise InputError(f"calibration batch size must be >= 1, got {batch_size}")


def _chunks(n: int, batch_size: int) -> list[int]:
    """Batch sizes that add up to n: [batch_size, ..., remainder]."""
    return [min(batch_size, n - i) for i in range(0, n, batch_size)]


def cond_of(batch: dict) -> Cond:
    """A data-source batch (fastlight/data/source.py) -> the model's Cond. text (B, L, D); image
    (B, C, 1, H, W) or None; architecture-specific `extra` (HunyuanVideo's pooled) gets the batch's
    text_mask beside it, the key the adapters that need a mask read (models/hunyuan.py)."""
    extra = dict(batch.get("extra") or {})
    if extra and "text_mask" in batch:
        extra.setdefault("text_mask", batch["text_mask"])
    image = batch.get("image")
    return Cond(batch["text"].float(), None if image is None else image.float(), extra or None)


def source_calibration(spec: dict | str, num_samples: int, seed: int = 0, batch_size: int = 16,
                       shift: float = DEFAULT_SHIFT) -> CalibrationSet:
    """Calibration set from a data source: `build_source(spec, seed=seed, batch_size=batch_size,
    stream="calibration")`, so the calibration clips never replay a training batch (the `train`
    stream of the same seed; data/source.py). Batch k is `source.batch(k)` (cut to the remainder for
    the last one); eps ~ N(0, I) like x0 and s = shift(u), u ~ U(0, 1) come from the disjoint stream
    `calibration/noise` of the same seed, step k. No CFG dropout: the conditional model is what we prune.
    """
    _check_counts(num_samples, batch_size, "data source")
    source = build_source(spec, seed=seed, batch_size=batch_size, stream="calibration")
    batches = []
    for k, n in enumerate(_chunks(num_samples, batch_size)):
        b = source.batch(k)
        if b["x0"].shape[0] < n:
            raise DataError(f"data source {spec!r} gave {b['x0'].shape[0]} samples for a batch of {n}; "
                            f"give it batch_size {batch_size}")
        idx = torch.arange(n)
        x0 = b["x0"][idx].float()  # (n, C, F, H, W)
        gen = stream_generator(seed, "calibration/noise", k)
        eps = torch.randn(x0.shape, generator=gen)  # (n, C, F, H, W)
        s = sample_s(n, shift, gen)  # (n,)
        batches.append(CalibBatch(x0, eps, s, cond_of(b).index(idx)))
    info = {"source": spec if isinstance(spec, str) else spec.get("_component_"), "data": spec,
            "stream": getattr(source, "stream", None), "num_samples": num_samples, "seed": seed,
            "batch_size": batch_size, "shift": float(shift)}
    return CalibrationSet(batches, info)


def latent_calibration(
    x0: torch.Tensor,
    cond: Cond,
    num_samples: int,
    seed: int = 0,
    shift: float = DEFAULT_SHIFT,
    batch_size: int = 8,
) -> CalibrationSet:
    """Calibration set from user latents: x0 (N, C, F, H, W) and a `cond` of batch N.

    Sample i uses latent i mod N (so num_samples > N reuses latents with fresh noise), eps ~ N(0, I)
    and s = shift(u), u ~ U(0, 1), all from one generator seeded with `seed`. For TI2V pass
    cond.image (N, C, 1, H, W); HunyuanVideo needs cond.extra pooled / text_mask (see models/hunyuan.py).
    """
    _check_counts(num_samples, batch_size, "latents")
    if x0.ndim != 5:
        raise DataError(f"calibration latents x0 must be (N, C, F, H, W), got shape {tuple(x0.shape)}")
    N = x0.shape[0]
    if N < 1:
        raise DataError("calibration set is empty: the latents file holds 0 samples")
    if cond.batch_size != N:
        raise DataError(f"calibration cond has batch {cond.batch_size} but x0 has {N} latents")
    if cond.image is not None and tuple(cond.image.shape) != (N, x0.shape[1], 1, *x0.shape[3:]):
        raise DataError(f"calibration image must be (N, C, 1, H, W) = {(N, x0.shape[1], 1, *x0.shape[3:])}, "
                        f"got {tuple(cond.image.shape)}")
    gen = torch.Generator().manual_seed(seed)
    batches, start = [], 0
    for n in _chunks(num_samples, batch_size):
        idx = torch.arange(start, start + n) % N
        start += n
        xb = x0[idx].float()  # (n, C, F, H, W)
        eps = torch.randn(xb.shape, generator=gen)
        s = sample_s(n, shift, gen)  # (n,)
        batches.append(CalibBatch(xb, eps, s, cond.index(idx)))
    info = {"source": "latents", "num_samples": num_samples, "num_latents": N, "seed": seed, "batch_size": batch_size,
            "shift": float(shift)}
    return CalibrationSet(batches, info)


def load_latents(path, device: str | torch.device = "cpu") -> tuple[torch.Tensor, Cond]:
    """Read a calibration latents file (safetensors) -> (x0, cond).

    Keys: x0 (N, C, F, H, W) latents; text (N, L, D) text-encoder embeddings; optional
    image (N, C, 1, H, W) clean first-frame latent (TI2V); any other keys (HunyuanVideo:
    pooled (N, P), text_mask (N, L), guidance (N,)) go to cond.extra.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"latents file {path} does not exist")
    if path.suffix != ".safetensors":
        raise DataError(f"--latents {path} must be a .safetensors file with keys x0 (N,C,F,H,W) and text (N,L,D)")
    tensors = read_safetensors(path, DataError, "give a latents file written by `fastlight preprocess` or "
                               "safetensors.torch.save_file", device=str(device))
    missing = [k for k in ("x0", "text") if k not in tensors]
    if missing:
        raise DataError(f"latents file {path} lacks {missing}; it needs x0 (N,C,F,H,W) and text (N,L,D) "
                        f"[, image (N,C,1,H,W), pooled, text_mask]; it has {sorted(tensors)}")
    x0, txt = tensors.pop("x0"), tensors.pop("text")
    image = tensors.pop("image", None)
    if txt.ndim != 3 or txt.shape[0] != x0.shape[0]:
        raise DataError(f"latents file {path}: text must be (N, L, D) with N = {x0.shape[0]}, got {tuple(txt.shape)}")
    return x0, Cond(txt.float(), None if image is None else image.float(), tensors or None)


def model_calibration(model: Denoiser, num_samples: int, seed: int = 0, data: dict | str | None = None,
                      latents: str | Path | None = None, batch_size: int | None = None,
                      shift: float | None = None) -> CalibrationSet:
    """The calibration set `fastlight analyze` uses: `latents` (a safetensors file, `load_latents`)
    if given, else the data source `data` (a `data:` spec), else the data source the model folder
    names (`analyze.defaults.model_defaults`: its fastlight.json `data`, or a plug-in's answer, e.g.
    the Shapes world for its models). `shift` defaults to the model's fastlight.json `shift` (3.0)."""
    shift = float(model.meta.get("shift", DEFAULT_SHIFT) if shift is None else shift)
    if latents is not None:
        x0, cond = load_latents(latents)
        cal = latent_calibration(x0, cond, num_samples, seed, shift, batch_size or 8)
        cal.info["latents"] = str(latents)
        return cal
    data = data if data is not None else model_defaults(model).get("data")
    if data is None:
        raise ModelError(
            "this model folder names no calibration data (no 'data' in its fastlight.json, and no plug-in knows "
            "it): pass --data SOURCE (a data: spec, e.g. \"{_component_: latents, path: SHARDS}\") or --latents "
            "FILE.safetensors with keys x0 (N,C,F,H,W) VAE latents and text (N,L,D) text embeddings [, image "
            "(N,C,1,H,W) clean first-frame latents for TI2V; HunyuanVideo also pooled (N,P) and text_mask (N,L)]")
    return source_calibration(data, num_samples, seed, batch_size or 16, shift)
