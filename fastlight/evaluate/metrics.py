"""Small metrics shared by evaluation, search and reporting: PSNR and the Pareto front."""
from __future__ import annotations

import math
from typing import Sequence

import torch

PSNR_CAP_DB = 100.0  # identical inputs: a finite "perfect" value instead of +inf


def psnr_db(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0, cap_db: float = PSNR_CAP_DB) -> float:
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE(x, ref)) in dB, capped at cap_db.

    data_range is the peak-to-peak range of the values: 2 for videos in [-1, 1] (the project's
    layout), 1 for RGB in [0, 1]. The MSE is taken in float32 over all elements."""
    if x.shape != ref.shape:
        raise ValueError(f"psnr_db: shapes differ, {tuple(x.shape)} vs {tuple(ref.shape)}")
    mse = float(((x.float() - ref.float()) ** 2).mean())
    return min(10 * math.log10(data_range ** 2 / mse), cap_db) if mse > 0 else cap_db


def pareto_front(points: Sequence[tuple[float, float]], maximize_x: bool = True) -> list[int]:
    """Indices of the points (x, y) that no other point beats on both axes, by increasing x.

    y is always higher-is-better; x is higher-is-better (speedup) or, with maximize_x=False,
    lower-is-better (cost). Of identical points the first is kept."""
    sign = -1.0 if maximize_x else 1.0
    order = sorted(range(len(points)), key=lambda i: (sign * points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:  # from the best x on: a point joins when its y beats every better-x point's
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: points[i][0])
