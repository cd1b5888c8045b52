"""End-to-end pipelines around a denoiser: the plug-in kind that `fastlight bench` (and the ONNX
export's default sizes) find through `fastlight/plugins.py`, entry point group `fastlight.pipelines`:

    [project.entry-points."fastlight.pipelines"]
    shapes = "fastlight.shapes.pipeline:ShapesPipeline"

A pipeline class provides (a world's text encoder, latent layout and decoder; nothing else):

    handles(model) -> bool                     static: whether it runs this denoiser end to end
    latent_shape(model) -> (C, F, H, W)        static: the latents one video is sampled in
    text_len(model) -> int                     static: the text tokens its encoder gives the model
    Pipeline(model, batch_size, seed, device)  untimed inputs of one batch (prompts, first frames)
    .encode() -> Cond                          timed "text": prompts -> the model's condition
    .decode(x) -> frames                       timed "decode": latents (B, C, F, H, W) -> frames on the host

The denoising between them is generic (`sampling.sample` with the model's SamplerSpec).
"""
from __future__ import annotations

from fastlight.models.denoiser import Denoiser
from fastlight.plugins import component, registered

GROUP = "fastlight.pipelines"


def pipeline_for(model: Denoiser):
    """The first registered pipeline class that handles `model`, or None."""
    for name in sorted(registered(GROUP)):
        cls = component(GROUP, name)
        if cls.handles(model):
            return cls
    return None


def registered_pipelines() -> list[str]:
    return sorted(registered(GROUP))
