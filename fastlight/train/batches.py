"""Training batches of the Shapes world, shared by the Stage II recipes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastlight.diffusion.flow import sample_s
from fastlight.train.loop import LoopConfig


@dataclass
class ShapesRecipeConfig(LoopConfig):
    """The fields every Shapes-world training recipe shares (flat, like every config)."""

    teacher: str = "shapes-teacher"
    batch_size: int = 16  # global: each of N processes gets batch_size / N
    shift: float = 3.0
    cfg_dropout: float = 0.1
    p_two_objects: float = 0.3
    threads: int = 2


def shapes_batch(cfg, step: int, rank: int, world_size: int, size: int, num_frames: int) -> tuple[dict, torch.Generator]:
    """Shapes clips streamed on the fly, a pure function of (cfg.seed, step, rank).

    Uses cfg.batch_size (global, split across processes), cfg.p_two_objects, cfg.cfg_dropout
    (null text), cfg.shift (noise levels). Returns ({x0, text, eps, s}, the generator) so a
    recipe can draw its own extras (skip sets, instance noise) from the same stream.
    """
    from fastlight.shapes import text, world as shapes

    if cfg.batch_size % world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world_size} processes")
    n = cfg.batch_size // world_size
    gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 1_009 + rank)
    world = shapes.WorldConfig(size=size, num_frames=num_frames, p_two_objects=cfg.p_two_objects)
    clips = [shapes.sample_clip(gen, world) for _ in range(n)]
    x0 = shapes.render_batch(clips, world)  # (n, 3, F, H, W)
    txt = text.encode([c.prompt for c in clips])
    txt[torch.rand(n, generator=gen) < cfg.cfg_dropout] = 0.0
    eps = torch.randn(x0.shape, generator=gen)
    s = sample_s(n, cfg.shift, gen)
    return {"x0": x0, "text": txt, "eps": eps, "s": s}, gen
