"""Helpers shared by the analysis tests (imported by conftest.py and the test modules)."""
import torch

from fastlight.models.denoiser import Cond
from fastlight.models.wan import WanDenoiser

IDENTITY = 2  # the block made an identity in the `wan_identity` fixture


def make_identity(model: WanDenoiser, index: int) -> None:
    """Zero a Wan block's residual contributions (attn1/attn2 output projections, FFN output)."""
    blk = model.model.blocks[index]
    with torch.no_grad():
        for lin in (blk.attn1.to_out[0], blk.attn2.to_out[0], blk.ffn.net[2]):
            lin.weight.zero_()
            lin.bias.zero_()


def wan_cond(n: int, ti2v: bool, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 4, 3, 8, 8, generator=g)
    image = x0[:, :, :1].clone() if ti2v else None
    return x0, Cond(torch.randn(n, 5, 16, generator=g), image)


class DepthMetric:
    """A toy video metric for `--metric analyze_helpers:DepthMetric`: 1 - 0.1 * (number of blocks skipped
    + the index of the highest one), so later blocks matter more."""

    def __init__(self, num_cases: int, num_steps: int, guidance: float):
        self.description = f"toy depth metric ({num_cases} cases, {num_steps} steps, guidance {guidance})"

    def __call__(self, model, skip) -> float:
        return 1.0 - 0.1 * (len(skip) + max(skip, default=0))
