"""The Shapes world as a data source (fastlight/data/source.py): clips rendered on the fly."""
from __future__ import annotations

from dataclasses import dataclass

from fastlight.data.source import DataError, local_batch_size, stream_generator
from fastlight.errors import ConfigError
from fastlight.shapes import text, world as shapes


@dataclass
class ShapesSource:
    """Shapes clips as pixel "latents" (B, 3, F, H, W) in [-1, 1], their phrase-token text
    (B, max_objects, TEXT_DIM) and mask, and the first frame as the TI2V image (B, 3, 1, H, W).
    Clip j of global batch `step` is drawn from its own generator (seed, stream, step, j), so a
    process renders only its share and N processes see the batch one process would: a pure
    function of (seed, stream, step, rank, num_processes); `stream` names its namespace (train,
    calibration, validation, test).

    `world` names the rules and numbers (`shapes.WORLDS`: v1, the default and the shipped teacher's,
    or v2, the open 64 px world); `size`, `num_frames` and (v1) `p_two_objects` override the named
    world's own when set (v1's defaults are 24, 8 and 0.3)."""

    batch_size: int = 16
    seed: int = 0
    stream: str = "train"
    size: int | None = None
    num_frames: int | None = None
    p_two_objects: float | None = None
    image: bool = True  # give the first frame as the TI2V image condition
    world: str = "v1"

    def __post_init__(self):
        if self.world not in shapes.WORLDS:
            raise DataError(f"unknown Shapes world {self.world!r}; use world: one of {', '.join(shapes.WORLDS)}")
        base = shapes.WORLDS[self.world]
        size = base.size if self.size is None else self.size
        num_frames = base.num_frames if self.num_frames is None else self.num_frames
        if self.p_two_objects is not None and not 0 <= self.p_two_objects <= 1:
            raise DataError(f"p_two_objects must be in [0, 1], got {self.p_two_objects}")
        if size < 8 or num_frames < 2:
            raise DataError(f"a Shapes clip needs size >= 8 and num_frames >= 2, got {size}, {num_frames}")

    @property
    def world_config(self) -> shapes.WorldConfig:
        """The world the clips come from."""
        overrides = {k: v for k, v in (("size", self.size), ("num_frames", self.num_frames),
                                       ("p_two_objects", self.p_two_objects)) if v is not None}
        try:
            return shapes.world_from_name(self.world, **overrides)
        except ConfigError as e:
            raise DataError(str(e)) from None

    def batch(self, step: int, rank: int = 0, num_processes: int = 1) -> dict:
        n = local_batch_size(self.batch_size, num_processes)
        world = self.world_config
        clips = [shapes.sample_clip(stream_generator(self.seed, f"shapes/{self.stream}", step, row), world)
                 for row in range(rank * n, (rank + 1) * n)]
        x0 = shapes.render_batch(clips, world)  # (n, 3, F, H, W)
        txt = text.encode([c.prompt for c in clips], world)  # (n, max_objects, TEXT_DIM)
        out = {"x0": x0, "text": txt, "text_mask": (txt.abs().sum(-1) > 0).float(),
               "prompts": [c.prompt for c in clips]}
        if self.image:
            out["image"] = x0[:, :, :1]
        return out
