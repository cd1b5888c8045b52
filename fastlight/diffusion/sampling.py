"""Samplers (DESIGN.md section 1): Euler ODE with classifier-free guidance, and the
stochastic few-step sampler of distilled students. Small pure functions over a `Denoiser`.

Notation (rectified flow, as in Wan):
    x_t    = (1 - s) x0 + s eps            s in [0, 1], timestep = 1000 s
    v      = eps - x0                       what the denoiser predicts
    x0_hat = x_t - s v                      Tweedie / the flow's clean estimate

CFG in the DMD2 / diffusers form (DESIGN.md: "we use the first form everywhere"):
    v_cfg = v(uncond) + w (v(cond) - v(uncond))          w = cfg_scale; w = 1: no guidance

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

from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from fastlight.diffusion.flow import pin_first_frame
from fastlight.models.denoiser import Cond, Denoiser

NUM_TRAIN_TIMESTEPS = 1000


# ---- noise-level grids ---------------------------------------------------------------------
def shifted_grid(num_steps: int, shift: float) -> torch.Tensor:
    """The num_steps + 1 noise levels s_0 = 1 > ... > s_{N-1} > s_N = 0 of an N-step Euler run.

    Bit-for-bit the `sigmas` that diffusers' `FlowMatchEulerDiscreteScheduler(shift=shift)`
    (num_train_timesteps = 1000, no dynamic shifting) holds after `set_timesteps(num_steps)`:
      1. training table: t = 1000, 999, ..., 1 (float32), s = t / 1000, shifted
         s' = shift s / (1 + (shift - 1) s) in float32; s_max = s'[0] (= 1), s_min = s'[-1];
      2. a float64 linspace of timesteps from 1000 s_max to 1000 s_min with N entries,
         divided by 1000 and shifted AGAIN (so s_min is shifted twice), cast to float32;
      3. a terminal 0 appended.
    Returns a float32 tensor (N + 1,).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"steps must be an integer, got {num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"steps must be >= 1, got {num_steps}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    n_train = NUM_TRAIN_TIMESTEPS
    # 1. the scheduler's training table (float32 torch, op by op as diffusers does it)
    t_train = torch.from_numpy(np.linspace(1, n_train, n_train, dtype=np.float32)[::-1].copy())  # (1000,)
    s_train = t_train / n_train
    s_train = shift * s_train / (1 + (shift - 1) * s_train)
    s_max, s_min = s_train[0].item(), s_train[-1].item()
    # 2. inference grid (float64 numpy), shifted once more, then float32
    t = np.linspace(s_max * n_train, s_min * n_train, num_steps)  # (N,)
    s = t / n_train
    s = shift * s / (1 + (shift - 1) * s)
    s = torch.from_numpy(s).to(torch.float32)
    # 3. terminal level
    return torch.cat([s, torch.zeros(1)])  # (N + 1,)


def few_step_grid(timesteps: Sequence[float] = (1000, 750, 500, 250)) -> list[float]:
    """Timesteps of a few-step student -> its noise levels s = timestep / 1000.

    E.g. FastVideo's Wan students: [1000, 750, 500, 250] -> [1.0, 0.75, 0.5, 0.25]. These are
    the levels the network is evaluated at (no terminal 0; `few_step_sample` ends with x0_hat).
    """
    timesteps = [float(t) for t in timesteps]
    if not timesteps:
        raise ValueError("timesteps must not be empty, e.g. [1000, 750, 500, 250]")
    if any(not 0 < t <= NUM_TRAIN_TIMESTEPS for t in timesteps):
        raise ValueError(f"timesteps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {timesteps}")
    if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
        raise ValueError(f"timesteps must be strictly decreasing, got {timesteps}")
    return [t / NUM_TRAIN_TIMESTEPS for t in timesteps]


# ---- guidance --------------------------------------------------------------------------------
def cfg_velocity(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    s: torch.Tensor,
    cond: Cond,
    cfg_scale: float,
    skip: Iterable[int] = (),
    guided: "GuidedCond | None" = None,
) -> torch.Tensor:
    """Guided velocity v = v_u + w (v_c - v_u), v_c = v(x_t, s, cond), v_u = v(x_t, s, null_cond).

    `guided`: the null condition and the stacked (cond, uncond) batch built once by
    `guided_cond` — samplers pass it so the text is not rebuilt at every step.

    cond and uncond run batched in ONE forward (batch 2B, `Cond.cat`). If their text (or
    extra) shapes differ, e.g. a 1-token null text against a longer prompt, the two cannot be
    stacked without padding (which would change the result), so two forwards run instead.
    cfg_scale == 1 runs the conditional forward only. x_t: (B, C, F, H, W); s: (B,) or scalar.
    Returns v: (B, C, F, H, W). No grad context is imposed (the caller chooses).
    """
    skip = tuple(skip)
    if cfg_scale == 1:
        return denoiser(x_t, s, cond, skip=skip)
    B = x_t.shape[0]
    s = torch.as_tensor(s, dtype=torch.float32, device=x_t.device)
    s = s.expand(B) if s.ndim == 0 else s  # (B,)
    guided = guided if guided is not None else guided_cond(denoiser, cond)
    uncond = guided.uncond
    if guided.both is not None:
        v = denoiser(torch.cat([x_t, x_t]), torch.cat([s, s]), guided.both, skip=skip)  # (2B, ...)
        v_c, v_u = v.chunk(2)
    else:
        v_c = denoiser(x_t, s, cond, skip=skip)
        v_u = denoiser(x_t, s, uncond, skip=skip)
    return v_u + cfg_scale * (v_c - v_u)


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
    s_grid: torch.Tensor | Sequence[float],
    cfg_scale: float = 1.0,
    skip: Iterable[int] = (),
    progress: bool = False,
) -> torch.Tensor:
    """Euler ODE from noise (at s_grid[0]) to the last level of s_grid:

        x_{i+1} = x_i + (s_{i+1} - s_i) v_cfg(x_i, s_i),   i = 0 .. len(s_grid) - 2

    With `s_grid = shifted_grid(N, shift)` this is diffusers' WanPipeline with
    `FlowMatchEulerDiscreteScheduler(shift=shift)`, N steps and guidance_scale = cfg_scale.
    noise: (B, C, F, H, W); s_grid: (N + 1,) strictly decreasing in [0, 1].
    Returns x0 (B, C, F, H, W) in noise's dtype.
    """
    s_grid = _as_grid(s_grid, "s_grid")
    if s_grid.numel() < 2:
        raise ValueError(f"s_grid needs at least 2 levels (start and end), got {s_grid.tolist()}")
    _check_decreasing(s_grid, "s_grid", lo_inclusive=True)
    _check_batch(noise, cond)
    skip = tuple(skip)
    B = noise.shape[0]
    x = pin_first_frame(noise.float(), cond.image)  # (B, C, F, H, W) float32 state
    guided = guided_cond(denoiser, cond) if cfg_scale != 1 else None  # text built once, not per step
    with torch.inference_mode():
        for i in _steps(len(s_grid) - 1, progress, "euler"):
            s, s_next = s_grid[i], s_grid[i + 1]  # 0-d float32
            v = cfg_velocity(denoiser, x.to(noise.dtype), s.expand(B).to(noise.device), cond, cfg_scale, skip, guided)
            x = x + (s_next - s).to(x.device) * v.float()
            x = pin_first_frame(x, cond.image)
    return x.to(noise.dtype).clone()  # clone outside inference mode: a normal tensor, usable in autograd


def few_step_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    cond: Cond,
    s_list: torch.Tensor | Sequence[float],
    generator: torch.Generator | None = None,
    cfg_scale: float = 1.0,
    skip: Iterable[int] = (),
    progress: bool = False,
) -> torch.Tensor:
    """Stochastic few-step sampler of distilled students (DMD2): at each level s_i

        x0_hat_i = x_i - s_i v_cfg(x_i, s_i)
        x_{i+1}  = (1 - s_{i+1}) x0_hat_i + s_{i+1} eps_i,    eps_i ~ N(0, I) fresh

    and returns x0_hat at the last level. eps_i = torch.randn(shape, generator, float32) drawn
    on the generator's device (the global RNG of noise's device if generator is None), like
    diffusers' `randn_tensor`. Identical to diffusers' FlowMatchEulerDiscreteScheduler with
    `stochastic_sampling=True` on sigmas s_list + [0], including its RNG use: diffusers also
    draws a (discarded, weight 0) eps at the last step, and so do we, so a generator shared
    across calls stays in step with diffusers.

    s_list: (K,) strictly decreasing levels in (0, 1], e.g. `few_step_grid()`; a trailing 0
    (as in `shifted_grid`'s output) is dropped. noise: (B, C, F, H, W).
    Returns x0 (B, C, F, H, W) in noise's dtype.
    """
    s_list = _as_grid(s_list, "s_list")
    if s_list.numel() >= 2 and s_list[-1] == 0:
        s_list = s_list[:-1]
    if s_list.numel() < 1:
        raise ValueError("s_list needs at least 1 noise level > 0, e.g. few_step_grid() = [1.0, 0.75, 0.5, 0.25]")
    _check_decreasing(s_list, "s_list", lo_inclusive=False)
    _check_batch(noise, cond)
    skip = tuple(skip)
    B = noise.shape[0]
    levels = torch.cat([s_list, torch.zeros(1)])  # (K + 1,) the last re-noise has weight 0
    rand_device = generator.device if generator is not None else noise.device
    x = pin_first_frame(noise.float(), cond.image)  # (B, C, F, H, W) float32 state
    guided = guided_cond(denoiser, cond) if cfg_scale != 1 else None  # text built once, not per step
    with torch.inference_mode():
        for i in _steps(len(s_list), progress, "few-step"):
            s, s_next = levels[i], levels[i + 1]  # 0-d float32
            v = cfg_velocity(denoiser, x.to(noise.dtype), s.expand(B).to(noise.device), cond, cfg_scale, skip, guided)
            x0_hat = pin_first_frame(x - s.to(x.device) * v.float(), cond.image)
            eps_new = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=rand_device).to(x.device)
            if i == len(s_list) - 1:
                x = x0_hat  # = (1 - 0) x0_hat + 0 eps_new; eps_new drawn only to keep RNG streams aligned
            else:
                s_next = s_next.to(x.device)
                x = pin_first_frame((1.0 - s_next) * x0_hat + s_next * eps_new, cond.image)
    return x.to(noise.dtype).clone()  # clone outside inference mode: a normal tensor, usable in autograd


# ---- helpers ---------------------------------------------------------------------------------
def _as_grid(grid, name: str) -> torch.Tensor:
    g = torch.as_tensor(grid).detach().to("cpu", torch.float32)
    if g.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(g.shape)}")
    if not torch.isfinite(g).all():
        raise ValueError(f"{name} must be finite, got {g.tolist()}")
    return g


def _check_decreasing(g: torch.Tensor, name: str, lo_inclusive: bool) -> None:
    if (g[1:] >= g[:-1]).any():
        raise ValueError(f"{name} must be strictly decreasing (noise to clean), got {g.tolist()}")
    lo_ok = g.min() >= 0 if lo_inclusive else g.min() > 0
    if not lo_ok or g.max() > 1:
        interval = "[0, 1]" if lo_inclusive else "(0, 1]"
        raise ValueError(f"{name} levels must lie in {interval}, got {g.tolist()}")


def _check_batch(noise: torch.Tensor, cond: Cond) -> None:
    if noise.ndim != 5:
        raise ValueError(f"noise must be (B, C, F, H, W), got shape {tuple(noise.shape)}")
    if cond.batch_size != noise.shape[0]:
        raise ValueError(f"cond has batch {cond.batch_size} but noise has batch {noise.shape[0]}")
    if cond.image is not None:
        B, C, _, H, W = noise.shape
        if tuple(cond.image.shape) != (B, C, 1, H, W):
            raise ValueError(f"cond.image must be (B, C, 1, H, W) = {(B, C, 1, H, W)}, got {tuple(cond.image.shape)}")


def _steps(n: int, progress: bool, desc: str):
    if not progress:
        return range(n)
    from tqdm.auto import tqdm

    return tqdm(range(n), desc=desc, leave=False)
