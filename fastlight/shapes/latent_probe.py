"""The latent Shapes teacher's prompt-sensitivity probe, a logging hook of the training loop (`shapes-latent-probe`).

    hooks: [{_component_: shapes-latent-probe, pipeline: runs/shapes_latent/pipe, every: 250}]

The latent counterpart of `shapes-probe` (fastlight/shapes/probe.py) for a transformer trained on a Shapes
pipeline folder's latent shards (configs/shapes/latent_pretrain.yaml). The probe batch is fixed: `num_cases`
single-object moving clips of the folder's world (`latent_data.folder_world`, at the model's recorded frame
count), encoded by the folder's own VAE and text encoder exactly as the shards are (normalised latents, the
first latent frame as the TI2V image, the folder's text length), with the same clips' opposite direction
words, and two fixed noises eps, eps'. Every `every` optimizer steps, at s = 0.75 (x_t = (1 - s) x0 + s eps)
it logs, over the generated latent frames (1+):
  * `prompt_sensitivity`: mean |x0_hat(prompt) - x0_hat(opposite direction)|, the same noise;
  * `prompt_sensitivity_vs_noise`: that over mean |x0_hat(prompt, eps) - x0_hat(prompt, eps')| (how far the
    text moves the prediction against how far other noise does; ~0 at random init: text ignored);
  * `probe_direction_acc`: the share of clips whose decode(x0_hat(prompt)) (the folder's VAE) moves in the
    prompt's direction as the world's oracle reads it (v2: `check_clip_v2`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fastlight.data.latents import _Vae, pipeline_text_len
from fastlight.diffusion.flow import add_noise, x0_from_v
from fastlight.errors import ConfigError, MissingFileError
from fastlight.models.denoiser import Cond
from fastlight.shapes import world as shapes
from fastlight.shapes.latent_data import WAN_TEXT_LEN, _PromptText, folder_world
from fastlight.shapes.probe import centroid_direction_ok, probe_set

S_PROBE = 0.75
NOISE_SEED = 4_242_421  # the probe's own noise stream (not a training stream)


@dataclass
class LatentProbeData:
    world: shapes.WorldConfig
    clips: list
    x0: torch.Tensor  # (n, C, F', h, w) normalised latents
    text: torch.Tensor  # (n, L, D) the prompts' embeddings
    text_swapped: torch.Tensor  # (n, L, D) the opposite directions'
    eps: torch.Tensor  # (n, C, F', h, w)
    eps_other: torch.Tensor


@torch.no_grad()
def latent_probe_set(pipeline: str | Path, num_frames: int, n: int = 16, device="cpu") -> tuple[LatentProbeData, _Vae]:
    """The fixed probe batch (module doc) and the folder's VAE (for decoding the predictions)."""
    pipeline = Path(pipeline)
    world = folder_world(pipeline, num_frames)
    _, clips, swapped, video, _ = probe_set(world.to_dict(), n)  # (n, 3, F, H, W) in [-1, 1]
    vae = _Vae(pipeline / "vae", device, torch.float32)
    x0 = torch.cat([vae.encode(video[i:i + 1]) for i in range(n)])  # (n, C, F', h, w), as the shards store
    words = _PromptText(pipeline, pipeline_text_len(pipeline) or WAN_TEXT_LEN, device)
    text = torch.stack([words(c.prompt)[0] for c in clips])
    text_swapped = torch.stack([words(c.prompt)[0] for c in swapped])
    gen = torch.Generator().manual_seed(NOISE_SEED)
    eps, eps_other = torch.randn(x0.shape, generator=gen), torch.randn(x0.shape, generator=gen)
    return LatentProbeData(world, clips, x0, text, text_swapped, eps, eps_other), vae


def _x0_hat(model, data: LatentProbeData, text: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    dev = next(model.parameters()).device
    x0 = data.x0.to(dev)
    s = torch.full((x0.shape[0],), S_PROBE, device=dev)
    x_t = add_noise(x0, eps.to(dev), s)
    # TI2V: the first latent frame is the clean condition, as in training
    return x0_from_v(x_t, s, model(x_t, s, Cond(text.to(dev), x0[:, :, :1]))).cpu()


def _direction_ok(video: torch.Tensor, clip: shapes.Clip, world: shapes.WorldConfig) -> bool:
    """video (3, F, H, W) in [-1, 1]: its object moves in the prompt's direction, as the world's oracle reads it
    (v2: `check_clip_v2`'s shape fit, which follows an object into and out of the frame; v1: the tracked
    centroid from the first to the last frame, as `shapes-probe` reads it)."""
    if world.name != "v1":
        return bool(shapes.check_clip_v2(video, clip, world)["objects"][0]["direction_ok"])
    return centroid_direction_ok(video, clip)


@torch.no_grad()
def latent_probe(model, data: LatentProbeData, vae: _Vae) -> dict:
    true = _x0_hat(model, data, data.text, data.eps)
    swap = _x0_hat(model, data, data.text_swapped, data.eps)
    other = _x0_hat(model, data, data.text, data.eps_other)
    sens = (true - swap)[:, :, 1:].abs().mean().item()
    noise = (true - other)[:, :, 1:].abs().mean().item()
    z = true / vae.inv_std + vae.mean  # the Wan normalisation undone, as the pipeline decodes
    ok = 0
    for i, clip in enumerate(data.clips):
        video = vae.vae.decode(z[i:i + 1].to(vae.device, vae.dtype)).sample.clamp(-1, 1)[0].float().cpu()
        ok += _direction_ok(video, clip, data.world)
    return {"prompt_sensitivity": sens, "prompt_sensitivity_vs_noise": sens / max(noise, 1e-12),
            "probe_direction_acc": ok / len(data.clips)}


@dataclass
class LatentPromptProbe:
    """hook(done_steps, model) -> the probe's metrics every `every` steps (None otherwise), on the probe batch
    of `pipeline` (the Shapes pipeline folder the shards were made with) at the model's recorded frame count
    (`meta.world.num_frames`, default 9). The model is put back in train mode."""

    pipeline: str = ""
    every: int = 250
    num_cases: int = 16

    def __post_init__(self):
        if self.every < 1 or self.num_cases < 1:
            raise ConfigError(f"shapes-latent-probe: every and num_cases must be >= 1, got {self.every}, {self.num_cases}")
        if not (Path(self.pipeline) / "model_index.json").is_file():
            raise MissingFileError(f"shapes-latent-probe: pipeline {self.pipeline!r} is not a pipeline folder; set "
                                   "pipeline: to the Shapes pipeline folder the shards were made with")
        self._data = None

    def __call__(self, done: int, model) -> dict | None:
        if done % self.every:
            return None
        if self._data is None:
            frames = int((model.meta.get("world") or {}).get("num_frames", 9))
            self._data = latent_probe_set(self.pipeline, frames, self.num_cases, next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            return latent_probe(model, *self._data)
        finally:
            model.train(was_training)
