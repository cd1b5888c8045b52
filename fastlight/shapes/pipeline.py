"""The Shapes world end to end (a `fastlight.pipelines` plug-in, fastlight/evaluate/pipelines.py):
the tiny phrase-token text encoder, pixel-space latents with the clean first frame given (TI2V),
and pixels -> uint8 frames as the "decoder" (the world has no VAE)."""
from __future__ import annotations

import torch

from fastlight.data import video
from fastlight.models.denoiser import Cond, Denoiser
from fastlight.shapes import text, world as shapes
from fastlight.shapes.generate import is_shapes_model, world_of


class ShapesPipeline:
    """Held-out clips' prompts and first frames (from `seed`), encoded and decoded the Shapes way."""

    @staticmethod
    def handles(model: Denoiser) -> bool:
        return is_shapes_model(model)

    @staticmethod
    def latent_shape(model: Denoiser) -> tuple[int, int, int, int]:
        world = world_of(model)
        return 3, world.num_frames, world.size, world.size

    @staticmethod
    def text_len(model: Denoiser) -> int:
        return world_of(model).max_objects

    def __init__(self, model: Denoiser, batch_size: int, seed: int, device: torch.device):
        world = world_of(model)
        clips = shapes.sample_clips(seed, batch_size, world)
        self.world = world
        self.prompts = [c.prompt for c in clips]
        self.images = shapes.render_batch(clips, world)[:, :, :1].to(device)  # (B, 3, 1, H, W): inputs, not timed
        self.device = device

    def encode(self) -> Cond:
        return Cond(text.encode(self.prompts, self.world).to(self.device), self.images)

    def decode(self, x: torch.Tensor) -> list:
        return [video.to_uint8_frames(v) for v in x.clamp(-1, 1).cpu()]  # (F, H, W, 3) uint8 each
