"""Calibration sets for Stage I: a fixed list of (x0, eps, s, cond) batches.

Every block is scored on the SAME triples (common random numbers, DESIGN.md section 1):
the score of block b is a paired difference err(skip b) - err(no skip) on identical
(x0, eps, s), so the noise of the draw cancels and a few dozen samples separate blocks.
A set is drawn once from one seeded `torch.Generator`, so the same (seed, size) gives the
same tensors on every run and machine.

    calib = shapes_calibration(model, num_samples=64, seed=0)          # embedded Shapes models
    calib = latent_calibration(x0, cond, num_samples=64, seed=0, shift=3.0)  # any latents + cond

Shapes: x0 (B, 3, F, H, W) in [-1, 1] rendered from `shapes.sample_clip`, text from the
Shapes encoder, image = x0[:, :, :1] (TI2V), s = flow.sample_s(B, shift) with the model's
shift (its fastlight.json `shift`, default 3.0): exactly how the teacher was trained.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import torch

from fastlight.diffusion.flow import sample_s
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
        raise ValueError(f"calibration size must be an integer, got {num_samples!r}")
    if num_samples < 1:
        raise ValueError(f"calibration set is empty: {what} num_samples={num_samples}; pass --calib N with N >= 1 (e.g. 64)")
    if batch_size < 1:
        raise ValueError(f"calibration batch size must be >= 1, got {batch_size}")


def _chunks(n: int, batch_size: int) -> list[int]:
    """Batch sizes that add up to n: [batch_size, ..., remainder]."""
    return [min(batch_size, n - i) for i in range(0, n, batch_size)]


def shapes_calibration(model: Denoiser, num_samples: int, seed: int = 0, batch_size: int = 16,
                       shift: float | None = None) -> CalibrationSet:
    """Calibration set from the model's Shapes world (how `train.pretrain.make_batch` builds data).

    Per batch, from one generator seeded with `seed`: clips ~ shapes.sample_clip, x0 = render
    (B, 3, F, H, W), text = text.encode(prompts) (B, L, D), image = x0[:, :, :1] (B, 3, 1, H, W),
    eps ~ N(0, I) like x0, s = shift(u), u ~ U(0, 1) (B,) with `shift` (default: the model's
    fastlight.json shift, else 3.0). No CFG dropout: the conditional model is what we prune.
    """
    from fastlight.shapes import text, world as shapes
    from fastlight.shapes.generate import world_of

    _check_counts(num_samples, batch_size, "Shapes")
    world = world_of(model)
    shift = float(model.meta.get("shift", DEFAULT_SHIFT) if shift is None else shift)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for n in _chunks(num_samples, batch_size):
        clips = [shapes.sample_clip(gen, world) for _ in range(n)]
        x0 = shapes.render_batch(clips, world)  # (n, 3, F, H, W)
        txt = text.encode([c.prompt for c in clips])  # (n, L, D)
        eps = torch.randn(x0.shape, generator=gen)  # (n, 3, F, H, W)
        s = sample_s(n, shift, gen)  # (n,)
        batches.append(CalibBatch(x0, eps, s, Cond(txt, x0[:, :, :1].clone())))
    info = {"source": "shapes", "num_samples": num_samples, "seed": seed, "batch_size": batch_size, "shift": shift,
            "world": {"size": world.size, "num_frames": world.num_frames, "p_two_objects": world.p_two_objects}}
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
        raise ValueError(f"calibration latents x0 must be (N, C, F, H, W), got shape {tuple(x0.shape)}")
    N = x0.shape[0]
    if N < 1:
        raise ValueError("calibration set is empty: the latents file holds 0 samples")
    if cond.batch_size != N:
        raise ValueError(f"calibration cond has batch {cond.batch_size} but x0 has {N} latents")
    if cond.image is not None and tuple(cond.image.shape) != (N, x0.shape[1], 1, *x0.shape[3:]):
        raise ValueError(f"calibration image must be (N, C, 1, H, W) = {(N, x0.shape[1], 1, *x0.shape[3:])}, "
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
    from pathlib import Path

    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"latents file {path} does not exist")
    if path.suffix != ".safetensors":
        raise ValueError(f"--latents {path} must be a .safetensors file with keys x0 (N,C,F,H,W) and text (N,L,D)")
    tensors = load_file(str(path), device=str(device))
    missing = [k for k in ("x0", "text") if k not in tensors]
    if missing:
        raise ValueError(f"latents file {path} lacks {missing}; it needs x0 (N,C,F,H,W) and text (N,L,D) "
                         f"[, image (N,C,1,H,W), pooled, text_mask]; it has {sorted(tensors)}")
    x0, txt = tensors.pop("x0"), tensors.pop("text")
    image = tensors.pop("image", None)
    if txt.ndim != 3 or txt.shape[0] != x0.shape[0]:
        raise ValueError(f"latents file {path}: text must be (N, L, D) with N = {x0.shape[0]}, got {tuple(txt.shape)}")
    return x0, Cond(txt.float(), None if image is None else image.float(), tensors or None)
