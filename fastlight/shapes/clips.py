"""The Shapes world's decoder-study plug-ins: the shipped Shapes VAE and the clips it encodes.

    [project.entry-points."fastlight.vaes"]    shapes-vae = "fastlight.shapes.clips:vae_dir"
    [project.entry-points."fastlight.clips"]   shapes = "fastlight.shapes.clips:ShapesClips.for_vae"

`fastlight prune-decoder --latents shapes` / `distill-decoder latents=shapes` ask the clip source
registered as `shapes` for clips at the VAE's resolution (its manifest.json `world`), then encode
them with the teacher's encoder (fastlight/decoder/distill.py).

Besides today's world (`sample_clips`: 1-2 objects starting in the central box, 0.5 / 1 px per frame)
the VAE must reconstruct what the next, harder world shows, so `sample_edge_clips` draws clips with
1-3 objects that start anywhere from just inside to just past a border (entering, leaving, partly
outside) and move at any speed up to `max_speed_px`; `ShapesClips(sampler="mix")` alternates the two.
`ShapesClips(sampler="v2")` draws the v2 world itself (`world.WORLDS["v2"]` at the source's size and
length: what the latent teacher is trained on); `v2_stream_clips` draws it from a named stream of
`fastlight.data.source` (the clips `ShapesSource(world="v2", stream=...)` gives), which is how the
Shapes VAE v3 is trained (`shapes/train`) and measured (ShapesBench's `shapes/validation` cases).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from fastlight.data.source import stream_generator
from fastlight.errors import InputError
from fastlight.shapes.world import (COLOURS, DIRECTIONS, SHAPES, Clip, ShapeObject, WorldConfig, render_batch,
                                    sample_clip, sample_clips, world_from_name)

SAMPLERS = ("v1", "edge", "mix", "v2")

SHIPPED_VAE = Path(__file__).resolve().parent.parent / "assets" / "shapes_vae"


def vae_dir() -> Path:
    """The shipped Shapes-world AutoencoderKLWan folder: the `shapes-vae` VAE preset."""
    return SHIPPED_VAE


@dataclass(frozen=True)
class FreeObject(ShapeObject):
    """A ShapeObject with any speed (px per frame), not only the world's two speed words. `speed` keeps
    a valid word so the oracle's code that reads it still runs; the motion comes from `speed_px`."""

    speed_px: float = 1.0

    @property
    def velocity_px(self) -> tuple[float, float]:
        dx, dy = DIRECTIONS[self.direction]
        return dx * self.speed_px, dy * self.speed_px


def sample_edge_clip(gen: torch.Generator, size: int, radius: tuple[float, float], max_speed_px: float,
                     object_probs: tuple[float, ...] = (0.4, 0.35, 0.25)) -> Clip:
    """One clip of 1-3 objects whose centres start anywhere in [-r, size + r] (so objects may start partly
    or wholly outside and enter, or leave), moving in any of the five directions at a speed drawn
    uniformly from [0.25, max_speed_px]. Objects keep apart in the first frame (bounded rejection)."""

    def u(a: float, b: float) -> float:
        return a + (b - a) * torch.rand((), generator=gen).item()

    def pick(seq):
        return seq[int(torch.randint(len(seq), (), generator=gen))]

    draw = torch.rand((), generator=gen).item()
    n = 1 + sum(draw >= sum(object_probs[:k + 1]) for k in range(len(object_probs) - 1))
    for _ in range(200):
        objects: list[FreeObject] = []
        for _ in range(n):
            r = u(*radius)
            x, y = u(-r, size + r), u(-r, size + r)
            if any(math.hypot(x - o.x0_px, y - o.y0_px) < r + o.radius_px + 0.5 for o in objects):
                break
            colour = pick([c for c in COLOURS if c not in {o.colour for o in objects}])
            objects.append(FreeObject(colour, pick(SHAPES), r, x, y, pick(list(DIRECTIONS)), "quickly",
                                      round(u(0.25, max_speed_px), 3)))
        if len(objects) == n:
            return Clip(tuple(objects))
    raise InputError(f"could not place {n} objects of radius {radius} apart on a {size} px canvas; "
                     "use a larger canvas or smaller objects")


def sample_edge_clips(seed: int, n: int, size: int = 64, radius: tuple[float, float] = (6.0, 12.0),
                      max_speed_px: float = 3.5) -> list[Clip]:
    """`n` clips from `sample_edge_clip`, a pure function of the seed."""
    gen = torch.Generator().manual_seed(seed)
    return [sample_edge_clip(gen, size, radius, max_speed_px) for _ in range(n)]


def v2_world(num_frames: int, size: int = 64) -> WorldConfig:
    """The v2 world (`WORLDS["v2"]`: radius 7-10 px, 1-3 objects, speeds 1 / 2 / 3.5 px per frame) at
    `num_frames` frames (1 and 5 too: the VAE's single-image and short steps; the clips do not depend
    on the length, so a shorter clip is the longer one's first frames)."""
    return world_from_name("v2", size=size, num_frames=num_frames)


def v2_stream_clips(seed: int, stream: str, step: int, n: int) -> list[Clip]:
    """Rows 0..n-1 of `step` of the named stream (e.g. `shapes/train`) in the v2 world: the clips of
    `ShapesSource(world="v2", seed=seed, stream=...).batch(step)` (fastlight/shapes/source.py)."""
    world = world_from_name("v2")
    return [sample_clip(stream_generator(seed, stream, step, row), world) for row in range(n)]


@dataclass(frozen=True)
class ShapesClips:
    """A clip source: `render(seed, n)` -> (n, 3, num_frames, size, size) in [-1, 1], a pure function
    of the seed. Object radii scale with the canvas (3.5-4.5 px at the DiT world's 24 px). `sampler`:
    "v1" today's world (`sample_clips`), "edge" `sample_edge_clips` (radius 6-12 px, up to 3.5 px per
    frame), "mix" the two by seed parity, "v2" the v2 world (`v2_world`; its own radii, the radius
    fields are not read)."""

    size: int = 64
    num_frames: int = 9
    radius_min_px: float = 3.5 * 64 / 24
    radius_max_px: float = 4.5 * 64 / 24
    sampler: str = "v1"

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown Shapes clip sampler {self.sampler!r}; use one of {SAMPLERS}")

    @classmethod
    def for_vae(cls, vae_dir: str | Path, size: int = 0, num_frames: int = 0) -> "ShapesClips":
        """The clips a Shapes VAE was trained on (its manifest.json `world`); `size` / `num_frames` > 0 override."""
        manifest = Path(vae_dir) / "manifest.json"
        world = json.loads(manifest.read_text()).get("world", {}) if manifest.is_file() else {}
        size = size or world.get("size", 64)
        radius = world.get("radius_px", [3.5 * size / 24, 4.5 * size / 24])
        return cls(size, num_frames or world.get("num_frames", 9), radius[0], radius[1], world.get("sampler", "v1"))

    def world(self) -> WorldConfig:
        if self.sampler == "v2":
            return v2_world(self.num_frames, self.size)
        return WorldConfig(size=self.size, num_frames=self.num_frames, radius_min_px=self.radius_min_px,
                           radius_max_px=self.radius_max_px)

    def clips(self, seed: int, n: int) -> list[Clip]:
        """The clip descriptions `render(seed, n)` draws."""
        if self.sampler == "v2":
            return sample_clips(seed, n, self.world())
        if self.sampler == "edge" or (self.sampler == "mix" and seed % 2):
            return sample_edge_clips(seed, n, self.size)
        return sample_clips(seed, n, self.world())

    def render(self, seed: int, n: int) -> torch.Tensor:
        return render_batch(self.clips(seed, n), self.world())  # (n, 3, F, H, W)
