"""The Shapes world as a data source (fastlight/data/source.py): clips rendered on the fly."""
from __future__ import annotations

from dataclasses import dataclass

from fastlight.data.source import DataError, local_batch_size, stream_generator
from fastlight.shapes import text, world as shapes


@dataclass
class ShapesSource:
    """Shapes clips as pixel "latents" (B, 3, F, H, W) in [-1, 1], their phrase-token text
    (B, MAX_OBJECTS, TEXT_DIM) and mask, and the first frame as the TI2V image (B, 3, 1, H, W).
    Clip j of global batch `step` is drawn from its own generator (seed, stream, step, j), so a
    process renders only its share and N processes see the batch one process would: a pure
    function of (seed, stream, step, rank, num_processes); `stream` names its namespace (train,
    calibration, validation, test)."""

    batch_size: int = 16
    seed: int = 0
    stream: str = "train"
    size: int = 24
    num_frames: int = 8
    p_two_objects: float = 0.3
    image: bool = True  # give the first frame as the TI2V image condition

    def __post_init__(self):
        if not 0 <= self.p_two_objects <= 1:
            raise DataError(f"p_two_objects must be in [0, 1], got {self.p_two_objects}")
        if self.size < 8 or self.num_frames < 2:
            raise DataError(f"a Shapes clip needs size >= 8 and num_frames >= 2, got {self.size}, {self.num_frames}")

    @property
    def world(self) -> shapes.WorldConfig:
        return shapes.WorldConfig(size=self.size, num_frames=self.num_frames, p_two_objects=self.p_two_objects)

    def batch(self, step: int, rank: int = 0, num_processes: int = 1) -> dict:
        n = local_batch_size(self.batch_size, num_processes)
        world = self.world
        clips = [shapes.sample_clip(stream_generator(self.seed, f"shapes/{self.stream}", step, row), world)
                 for row in range(rank * n, (rank + 1) * n)]
        x0 = shapes.render_batch(clips, world)  # (n, 3, F, H, W)
        txt = text.encode([c.prompt for c in clips])  # (n, MAX_OBJECTS, TEXT_DIM)
        out = {"x0": x0, "text": txt, "text_mask": (txt.abs().sum(-1) > 0).float(),
               "prompts": [c.prompt for c in clips]}
        if self.image:
            out["image"] = x0[:, :, :1]
        return out
