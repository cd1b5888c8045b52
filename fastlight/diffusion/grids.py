"""Noise-level grids of the samplers (DESIGN.md section 1): pure functions of step counts and
timesteps, shared by the samplers (`sampling.py`) and the sampler value (`spec.py`)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fastlight.errors import SamplerError

NUM_TRAIN_TIMESTEPS = 1000


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
        raise SamplerError(f"steps must be an integer, got {num_steps!r}")
    if num_steps < 1:
        raise SamplerError(f"steps must be >= 1, got {num_steps}")
    if not shift > 0:
        raise SamplerError(f"shift must be > 0, got {shift}")
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
    the levels the network is evaluated at (no terminal 0; the few-step sampler ends with x0_hat).
    """
    timesteps = [float(t) for t in timesteps]
    if not timesteps:
        raise SamplerError("timesteps must not be empty, e.g. [1000, 750, 500, 250]")
    if any(not 0 < t <= NUM_TRAIN_TIMESTEPS for t in timesteps):
        raise SamplerError(f"timesteps must lie in (0, {NUM_TRAIN_TIMESTEPS}], got {timesteps}")
    if any(b >= a for a, b in zip(timesteps, timesteps[1:])):
        raise SamplerError(f"timesteps must be strictly decreasing, got {timesteps}")
    return [t / NUM_TRAIN_TIMESTEPS for t in timesteps]


def even_timesteps(num_steps: int) -> tuple[float, ...]:
    """`num_steps` evenly spaced timesteps from 1000 down: 1000 (1 - i / N); 4 -> 1000, 750, 500, 250."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise SamplerError(f"steps must be an integer >= 1, got {num_steps!r}")
    return tuple(NUM_TRAIN_TIMESTEPS * (num_steps - i) / num_steps for i in range(num_steps))
