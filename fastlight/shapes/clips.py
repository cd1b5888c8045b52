"""The Shapes world's decoder-study plug-ins: the shipped Shapes VAE and the clips it encodes.

    [project.entry-points."fastlight.vaes"]    shapes-vae = "fastlight.shapes.clips:vae_dir"
    [project.entry-points."fastlight.clips"]   shapes = "fastlight.shapes.clips:ShapesClips.for_vae"

`fastlight prune-decoder --latents shapes` / `distill-decoder latents=shapes` ask the clip source
registered as `shapes` for clips at the VAE's resolution (its manifest.json `world`), then encode
them with the teacher's encoder (fastlight/decoder/distill.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fastlight.shapes.world import WorldConfig, render_batch, sample_clips

SHIPPED_VAE = Path(__file__).resolve().parent.parent / "assets" / "shapes_vae"


def vae_dir() -> Path:
    """The shipped Shapes-world AutoencoderKLWan folder: the `shapes-vae` VAE preset."""
    return SHIPPED_VAE


@dataclass(frozen=True)
class ShapesClips:
    """A clip source: `render(seed, n)` -> (n, 3, num_frames, size, size) in [-1, 1], a pure function
    of the seed. Object radii scale with the canvas (3.5-4.5 px at the DiT world's 24 px)."""

    size: int = 64
    num_frames: int = 9
    radius_min_px: float = 3.5 * 64 / 24
    radius_max_px: float = 4.5 * 64 / 24

    @classmethod
    def for_vae(cls, vae_dir: str | Path, size: int = 0, num_frames: int = 0) -> "ShapesClips":
        """The clips a Shapes VAE was trained on (its manifest.json `world`); `size` / `num_frames` > 0 override."""
        manifest = Path(vae_dir) / "manifest.json"
        world = json.loads(manifest.read_text()).get("world", {}) if manifest.is_file() else {}
        size = size or world.get("size", 64)
        radius = world.get("radius_px", [3.5 * size / 24, 4.5 * size / 24])
        return cls(size, num_frames or world.get("num_frames", 9), radius[0], radius[1])

    def render(self, seed: int, n: int) -> torch.Tensor:
        world = WorldConfig(size=self.size, num_frames=self.num_frames, radius_min_px=self.radius_min_px,
                            radius_max_px=self.radius_max_px)
        return render_batch(sample_clips(seed, n, world), world)  # (n, 3, F, H, W)
