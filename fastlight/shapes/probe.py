"""The Shapes teacher's prompt-sensitivity probe, a logging hook of the training loop (`shapes-probe`).

    hooks: [{_component_: shapes-probe, every: 100}]      # in a recipe config (e.g. configs/shapes/pretrain.yaml)

Every `every` optimizer steps it logs the mean |x0_hat(true prompt) - x0_hat(opposite direction)| on
a fixed probe batch with the same noise (`prompt_sensitivity`), and the direction accuracy the oracle
reads off that one-step x0_hat (`probe_direction_acc`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from fastlight.diffusion.flow import add_noise, x0_from_v
from fastlight.errors import ConfigError
from fastlight.models.denoiser import Cond
from fastlight.shapes import text, world as shapes

_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _world_of(cfg) -> shapes.WorldConfig:
    """The Shapes world a config or model meta records (`world`: WorldConfig.to_dict, or v1's {size, num_frames})."""
    world = (getattr(cfg, "meta", None) or {}).get("world", {}) if not isinstance(cfg, dict) else cfg
    return shapes.WorldConfig.from_dict(world)


def _one_object(world: shapes.WorldConfig) -> shapes.WorldConfig:
    """The same world drawing one object per clip (v1 through p_two_objects, so its probe set is unchanged)."""
    return replace(world, p_two_objects=0.0) if world.object_probs is None else replace(world, object_probs=(1.0,))


def probe_set(cfg=None, n: int = 16):
    """n single-object moving clips (a fixed seed), the same clips with the opposite direction, x0, eps."""
    full = _world_of(cfg if cfg is not None else {})
    world = _one_object(full)
    gen = torch.Generator().manual_seed(987_654)
    clips = []
    while len(clips) < n:
        c = shapes.sample_clip(gen, world)
        if c.objects[0].direction != "still":
            clips.append(c)
    swapped = [
        shapes.Clip(tuple(shapes.ShapeObject(**{**o.__dict__, "direction": _OPPOSITE[o.direction]}) for o in c.objects))
        for c in clips
    ]
    x0 = shapes.render_batch(clips, world)
    eps = torch.randn(x0.shape, generator=gen)
    return full, clips, swapped, x0, eps


@torch.no_grad()
def probe(model, probe_data, s_value: float = 0.75) -> dict:
    world, clips, swapped, x0, eps = probe_data
    dev = next(model.parameters()).device
    x0, eps = x0.to(dev), eps.to(dev)
    s = torch.full((x0.shape[0],), s_value, device=dev)
    x_t = add_noise(x0, eps, s)
    image = x0[:, :, :1]
    x0_true = x0_from_v(x_t, s, model(x_t, s, Cond(text.encode([c.prompt for c in clips], world).to(dev), image)))
    x0_swap = x0_from_v(x_t, s, model(x_t, s, Cond(text.encode([c.prompt for c in swapped], world).to(dev), image)))
    sens = (x0_true - x0_swap)[:, :, 1:].abs().mean().item()
    ok = sum(centroid_direction_ok(x0_true[i].cpu(), c) for i, c in enumerate(clips))
    return {"prompt_sensitivity": sens, "probe_direction_acc": ok / len(clips)}


def centroid_direction_ok(video: torch.Tensor, clip: shapes.Clip) -> bool:
    """video (3, F, H, W): the clip's one object, tracked by colour, moves in the prompt's direction from the
    first to the last frame (a fuzzy one-step x0_hat: min area 1 px, still below 0.5 px)."""
    obj = clip.objects[0]
    tr = shapes.track(video, [obj.colour], min_area_px=1.0)[obj.colour]
    a, b = tr.centroid_px[0], tr.centroid_px[-1]
    return a is not None and b is not None and shapes.classify_motion(b[0] - a[0], b[1] - a[1], still_px=0.5) == obj.direction


@dataclass
class PromptProbe:
    """hook(done_steps, model) -> the probe's metrics every `every` steps (None otherwise); the probe
    set follows the model's recorded Shapes world. Runs on every process (a sharded model's forwards
    are collective); the model is put back in train mode."""

    every: int = 100
    num_cases: int = 16

    def __post_init__(self):
        if self.every < 1:
            raise ConfigError(f"shapes-probe: every must be >= 1, got {self.every}")
        self._data = None

    def __call__(self, done: int, model) -> dict | None:
        if done % self.every:
            return None
        if self._data is None:
            self._data = probe_set(dict(model.meta.get("world", {})), self.num_cases)
        was_training = model.training
        model.eval()
        try:
            return probe(model, self._data)
        finally:
            model.train(was_training)
