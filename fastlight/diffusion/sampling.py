"""Samplers (DESIGN.md section 1) with one head, k-diffusion style: the Euler ODE and the stochastic
few-step sampler of distilled students share one signature

    euler_sample(denoiser, noise, cond, levels, guidance=1.0, generator=None, skip=(), progress=False)
    few_step_sample(denoiser, noise, cond, levels, guidance=1.0, generator=None, skip=(), progress=False)

and one loop (`_integrate`): the same guided velocity (`cfg_velocity`, the one CFG of the samplers),
the same skip set, the same first-frame pinning; they differ only in their update. `sample(denoiser,
noise, cond, spec)` runs the sampler a `SamplerSpec` names (fastlight/diffusion/spec.py).

Notation (rectified flow, as in Wan):
    x_t    = (1 - s) x0 + s eps            s in [0, 1], timestep = 1000 s
    v      = eps - x0                       what the denoiser predicts
    x0_hat = x_t - s v                      Tweedie / the flow's clean estimate

CFG in the DMD2 / diffusers form (DESIGN.md: "we use the first form everywhere"):
    v_cfg = v(uncond) + w (v(cond) - v(uncond))          w = guidance; w = 1: no guidance

Euler ODE on a decreasing grid s_0 > s_1 > ... > s_N (= 0):
    x_{i+1} = x_i + (s_{i+1} - s_i) v_cfg(x_i, s_i)

Few-step stochastic sampler (DMD2 students; diffusers' FlowMatchEulerDiscreteScheduler with
`stochastic_sampling=True`), levels s_0 > ... > s_{K-1} > 0:
    x0_hat_i = x_i - s_i v_cfg(x_i, s_i)
    x_{i+1}  = (1 - s_{i+1}) x0_hat_i + s_{i+1} eps_i,   eps_i ~ N(0, I) fresh
    output   = x0_hat_{K-1}

Both samplers run under torch.inference_mode, keep their state in float32 (as diffusers'
scheduler does), give the denoiser the state in the noise's dtype, and return an ordinary
(non-inference) tensor in the noise's dtype. For text+image-to-video (cond.image not None)
the first latent frame is pinned to the clean image at every step (`flow.pin_first_frame`).

Tensor shapes: x, noise (B, C, F, H, W); s (B,) for the denoiser; grids are 1-D.
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple, Sequence

import torch
from tqdm.auto import tqdm

from fastlight.diffusion.flow import pin_first_frame
from fastlight.diffusion.grids import few_step_grid, shifted_grid  # noqa: F401  (re-exported: the samplers' grids)
from fastlight.diffusion.spec import SamplerSpec
from fastlight.errors import InputError, SamplerError
from fastlight.models.denoiser import Cond, Denoiser


# ---- guidance --------------------------------------------------------------------------------
def cfg_velocity(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    s: torch.Tensor,
    cond: Cond,
    guidance: float,
    skip: Iterable[int] = (),
    guided: "GuidedCond | None" = None,
) -> torch.Tensor:
    """Guided velocity v = v_u + w (v_c - v_u), v_c = v(x_t, s, cond), v_u = v(x_t, s, null_cond), w = guidance.

    `guided`: the null condition and the stacked (cond, uncond) batch built once by
    `guided_cond` — samplers pass it so the text is not rebuilt at every step.

    cond and uncond run batched in ONE forward (batch 2B, `Cond.cat`). If their text (or
    extra) shapes differ, e.g. a 1-token null text against a longer prompt, the two cannot be
    stacked without padding (which would change the result), so two forwards run instead.
    guidance == 1 runs the conditional forward only. x_t: (B, C, F, H, W); s: (B,) or scalar.
    Returns v: (B, C, F, H, W). No grad context is imposed (the caller chooses).
    """
    skip = tuple(skip)
    if guidance == 1:
        return denoiser(x_t, s, cond, skip=skip)
    B = x_t.shape[0]
    s = torch.as_tensor(s, dtype=torch.float32, device=x_t.device)
    s = s.expand(B) if s.ndim == 0 else s  # (B,)
    guided = guided if guided is not None else guided_cond(denoiser, cond)
    if guided.both is not None:
        v = denoiser(torch.cat([x_t, x_t]), torch.cat([s, s]), guided.both, skip=skip)  # (2B, ...)
        v_c, v_u = v.chunk(2)
    else:
        v_c = denoiser(x_t, s, cond, skip=skip)
        v_u = denoiser(x_t, s, guided.uncond, skip=skip)
    return v_u + guidance * (v_c - v_u)


def guided_velocity(denoiser: Denoiser, cond: Cond, guidance: float, skip: Iterable[int] = ()) -> Callable:
    """(x_t, s) -> `cfg_velocity(...)` with the CFG batch built once (guidance as a wrapper)."""
    skip = tuple(skip)
    guided = guided_cond(denoiser, cond) if guidance != 1 else None
    return lambda x_t, s: cfg_velocity(denoiser, x_t, s, cond, guidance, skip, guided)


class GuidedCond(NamedTuple):
    uncond: Cond
    both: Cond | None  # cond.cat(uncond) when the two can be stacked, else None (two forwards)


def guided_cond(denoiser: Denoiser, cond: Cond) -> GuidedCond:
    """The null condition and the stacked CFG batch for `cond`, computed once per sampling run."""
    uncond = denoiser.null_cond(cond)
    return GuidedCond(uncond, cond.cat(uncond) if _stackable(cond, uncond) else None)


def _stackable(a: Cond, b: Cond) -> bool:
    if a.text.shape != b.text.shape:
        return False
    if (a.image is None) != (b.image is None) or (a.image is not None and a.image.shape != b.image.shape):
        return False
    if (a.extra is None) != (b.extra is None):
        return False
    if a.extra is not None:
        if a.extra.keys() != b.extra.keys():
            return False
        return all(a.extra[k].shape == b.extra[k].shape for k in a.extra)
    return True


# ---- samplers --------------------------------------------------------------------------------
def euler_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    cond: Cond,
    levels: torch.Tensor | Sequence[float],
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    skip: Iterable[int] = (),
    progress: bool = False,
) -> torch.Tensor:
    """Euler ODE from noise (at levels[0]) to the last level:

        x_{i+1} = x_i + (s_{i+1} - s_i) v_cfg(x_i, s_i),   i = 0 .. len(levels) - 2

    With `levels = shifted_grid(N, shift)` this is diffusers' WanPipeline with
    `FlowMatchEulerDiscreteScheduler(shift=shift)`, N steps and guidance_scale = guidance.
    Deterministic: `generator` is part of the one head and unused. noise: (B, C, F, H, W);
    levels: (N + 1,) strictly decreasing in [0, 1]. Returns x0 (B, C, F, H, W) in noise's dtype.
    """
    levels = _as_grid(levels, "levels")
    if levels.numel() < 2:
        raise SamplerError(f"Euler needs at least 2 levels (start and end), got {levels.tolist()}")
    _check_decreasing(levels, "levels", lo_inclusive=True)

    def update(x, v, s, s_next, last):
        return x + (s_next - s) * v

    return _integrate(denoiser, noise, cond, levels, guidance, skip, update, progress, "euler")


def few_step_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    cond: Cond,
    levels: torch.Tensor | Sequence[float],
    guidance: float = 1.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    skip: Iterable[int] = (),
    progress: bool = False,
) -> torch.Tensor:
    """Stochastic few-step sampler of distilled students (DMD2): at each level s_i

        x0_hat_i = x_i - s_i v_cfg(x_i, s_i)
        x_{i+1}  = (1 - s_{i+1}) x0_hat_i + s_{i+1} eps_i,    eps_i ~ N(0, I) fresh

    and returns x0_hat at the last level. eps_i = torch.randn(shape, generator, float32) drawn
    on the generator's device (the global RNG of noise's device if generator is None), like
    diffusers' `randn_tensor`; a list of B generators draws sample b's eps from generator b (as
    `randn_tensor` does), so each sample is the same whatever batch it is drawn in. Identical to diffusers' FlowMatchEulerDiscreteScheduler with
    `stochastic_sampling=True` on sigmas levels + [0], including its RNG use: diffusers also
    draws a (discarded, weight 0) eps at the last step, and so do we, so a generator shared
    across calls stays in step with diffusers.

    levels: (K,) strictly decreasing in (0, 1], e.g. `few_step_grid()`; a trailing 0 (as in
    `shifted_grid`'s output) is dropped. noise: (B, C, F, H, W).
    Returns x0 (B, C, F, H, W) in noise's dtype.
    """
    levels = _as_grid(levels, "levels")
    if levels.numel() >= 2 and levels[-1] == 0:
        levels = levels[:-1]
    if levels.numel() < 1:
        raise SamplerError("levels need at least 1 noise level > 0, e.g. few_step_grid() = [1.0, 0.75, 0.5, 0.25]")
    _check_decreasing(levels, "levels", lo_inclusive=False)
    if isinstance(generator, (list, tuple)) and len(generator) != noise.shape[0]:
        raise SamplerError(f"got {len(generator)} generator(s) for a batch of {noise.shape[0]}: pass one per sample, or one")

    def update(x, v, s, s_next, last):
        x0_hat = x - s * v
        eps = randn(x.shape, generator, x.device)
        # at the last level s_next = 0: x0_hat itself; eps is drawn anyway to keep the RNG in step with diffusers
        return x0_hat if last else (1.0 - s_next) * x0_hat + s_next * eps

    levels = torch.cat([levels, torch.zeros(1)])  # (K + 1,) the last re-noise has weight 0
    return _integrate(denoiser, noise, cond, levels, guidance, skip, update, progress, "few-step")


def randn(shape: Sequence[int], generator: torch.Generator | Sequence[torch.Generator] | None,
          device: torch.device) -> torch.Tensor:
    """float32 N(0, I) of `shape` drawn as diffusers' `randn_tensor` draws it: on the generator's device
    (`device`'s global RNG if None), or row b from generator b for a list, then moved to `device`."""
    if isinstance(generator, (list, tuple)):
        rows = [torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32, device=g.device) for g in generator]
        return torch.cat(rows).to(device)
    rand_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=rand_device).to(device)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"euler": euler_sample, "few_step": few_step_sample}


def sample(denoiser: Denoiser, noise: torch.Tensor, cond: Cond, spec: SamplerSpec,
           generator: torch.Generator | Sequence[torch.Generator] | None = None, skip: Iterable[int] = (), progress: bool = False) -> torch.Tensor:
    """Run the sampler `spec` names, at its levels and guidance. noise: (B, C, F, H, W).
    `generator`: the few-step sampler's re-noising stream, one or one per sample (Euler is deterministic)."""
    return SAMPLERS[spec.kind](denoiser, noise, cond, spec.levels, spec.guidance, generator, skip, progress)


def _integrate(denoiser: Denoiser, noise: torch.Tensor, cond: Cond, levels: torch.Tensor, guidance: float,
               skip: Iterable[int], update: Callable, progress: bool, desc: str) -> torch.Tensor:
    """The one loop: x <- update(x, v_cfg(x, s_i), s_i, s_{i+1}, last) over levels (checked, (N + 1,)),
    the state in float32 and the first frame pinned to the image (TI2V)."""
    _check_batch(noise, cond)
    B = noise.shape[0]
    velocity = guided_velocity(denoiser, cond, guidance, skip)  # the CFG batch is built once, not per step
    x = pin_first_frame(noise.float(), cond.image)  # (B, C, F, H, W) float32 state
    n = len(levels) - 1
    with torch.inference_mode():
        for i in _steps(n, progress, desc):
            s, s_next = levels[i].to(x.device), levels[i + 1].to(x.device)  # 0-d float32
            v = velocity(x.to(noise.dtype), s.expand(B).to(noise.device)).float()
            x = pin_first_frame(update(x, v, s, s_next, i == n - 1), cond.image)
    return x.to(noise.dtype).clone()  # clone outside inference mode: a normal tensor, usable in autograd


# ---- helpers ---------------------------------------------------------------------------------
def _as_grid(grid, name: str) -> torch.Tensor:
    g = torch.as_tensor(grid).detach().to("cpu", torch.float32)
    if g.ndim != 1:
        raise SamplerError(f"{name} must be 1-D, got shape {tuple(g.shape)}")
    if not torch.isfinite(g).all():
        raise SamplerError(f"{name} must be finite, got {g.tolist()}")
    return g


def _check_decreasing(g: torch.Tensor, name: str, lo_inclusive: bool) -> None:
    if (g[1:] >= g[:-1]).any():
        raise SamplerError(f"{name} must be strictly decreasing (noise to clean), got {g.tolist()}")
    lo_ok = g.min() >= 0 if lo_inclusive else g.min() > 0
    if not lo_ok or g.max() > 1:
        interval = "[0, 1]" if lo_inclusive else "(0, 1]"
        raise SamplerError(f"{name} must lie in {interval}, got {g.tolist()}")


def _check_batch(noise: torch.Tensor, cond: Cond) -> None:
    if noise.ndim != 5:
        raise InputError(f"noise must be (B, C, F, H, W), got shape {tuple(noise.shape)}")
    if cond.batch_size != noise.shape[0]:
        raise InputError(f"cond has batch {cond.batch_size} but noise has batch {noise.shape[0]}")
    if cond.image is not None:
        B, C, _, H, W = noise.shape
        if tuple(cond.image.shape) != (B, C, 1, H, W):
            raise InputError(f"cond.image must be (B, C, 1, H, W) = {(B, C, 1, H, W)}, got {tuple(cond.image.shape)}")


def _steps(n: int, progress: bool, desc: str):
    return tqdm(range(n), desc=desc, leave=False) if progress else range(n)
