"""Rectified-flow maths (DESIGN.md section 1), model-agnostic pure functions.

    x_t = (1 - s) * x0 + s * eps        (noising, s in [0, 1], timestep = 1000 s)
    v   = eps - x0                       (the velocity the network predicts)
    x0_hat = x_t - s * v                 (Tweedie / the flow's clean estimate)
    shift(s) = k s / (1 + (k - 1) s)    (Wan / SD3 timestep shift, k = `shift`)
"""
from __future__ import annotations

import torch


def _bcast(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) or scalar -> broadcastable against x (B, ...)."""
    s = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    return s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim else s


def add_noise(x0: torch.Tensor, eps: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    s = _bcast(s, x0)
    return (1 - s) * x0 + s * eps


def v_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - x0


def x0_from_v(x_t: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Tweedie's clean estimate x0_hat = x_t - s v (done in float32)."""
    return (x_t.float() - _bcast(s, x_t.float()) * v.float()).to(x_t.dtype)


def shift_s(s: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """s' = shift * s / (1 + (shift - 1) * s)."""
    return shift * s / (1 + (shift - 1) * s)


def sample_s(batch_size: int, shift: float = 1.0, generator: torch.Generator | None = None, s_min: float = 0.0, s_max: float = 1.0) -> torch.Tensor:
    """Training noise levels: u ~ U(s_min, s_max), then shifted. (B,)"""
    u = s_min + (s_max - s_min) * torch.rand(batch_size, generator=generator)
    return shift_s(u, shift)


def pin_first_frame(x: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
    """TI2V: the first latent frame is the clean image condition. x: (B, C, F, H, W)."""
    if image is None:
        return x
    return torch.cat([image.to(x), x[:, :, 1:]], dim=2)
