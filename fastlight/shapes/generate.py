"""Sampling in the Shapes world: first frames drawn from a prompt, Shapes text encoding, the demo (`write_demo`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fastlight.data import video
from fastlight.diffusion import sampling
from fastlight.diffusion.spec import DEFAULT_SHIFT, SamplerSpec, choose_sampler
from fastlight.errors import ModelError
from fastlight.models.denoiser import Cond, Denoiser
from fastlight.models.load import load_denoiser, resolve_model_path
from fastlight.shapes import text, world as shapes


@dataclass
class ShapesSampleSpec:
    prompt: str
    image: torch.Tensor  # (3, H, W) in [-1, 1]
    clip: shapes.Clip | None  # the ideal clip when the first frame was drawn from the prompt


def world_of(model: Denoiser) -> shapes.WorldConfig:
    w = model.meta.get("world")
    if w is None:
        raise ModelError("this model has no Shapes world in its fastlight.json; it is not an embedded Shapes model")
    return shapes.WorldConfig.from_dict(w)


def is_shapes_model(model: Denoiser) -> bool:
    return "world" in model.meta


def shapes_spec(prompt: str, world: shapes.WorldConfig, seed: int, image_path: str | None = None) -> ShapesSampleSpec:
    specs = text.parse(prompt, world)  # raises PromptError with the vocabulary
    if image_path is not None:
        return ShapesSampleSpec(prompt, video.read_image(image_path, world.size), None)
    clip = shapes.place_objects(specs, torch.Generator().manual_seed(seed), world)
    return ShapesSampleSpec(prompt, shapes.render(clip, world)[:, 0], clip)


def generate(model: Denoiser, prompts: list[str], images: torch.Tensor, spec: SamplerSpec, seed: int = 0,
             skip=(), progress: bool = False) -> torch.Tensor:
    """Sample Shapes videos with the sampler `spec`. The noise and then the few-step sampler's
    re-noising eps come from ONE generator seeded `seed` (the stream a stock diffusers pipeline
    uses after `torch.manual_seed(seed)`). images: (B, 3, H, W) first frames. Returns (B, 3, F, H, W)."""
    world = world_of(model)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(prompts), 3, world.num_frames, world.size, world.size, generator=gen)
    cond = Cond(text.encode(prompts, world), images[:, :, None])
    return sampling.sample(model, noise, cond, spec, generator=gen, skip=skip, progress=progress).clamp(-1, 1)


def generate_shapes(model: Denoiser, prompts: list[str], images: torch.Tensor, num_steps: int = 50,
                    guidance: float = 4.0, seed: int = 0, shift: float | None = None, skip=(),
                    progress: bool = False) -> torch.Tensor:
    """`generate` with `num_steps` Euler steps (shift: the model's own unless given)."""
    spec = SamplerSpec.euler(num_steps, guidance, shift if shift is not None else model.meta.get("shift", DEFAULT_SHIFT))
    return generate(model, prompts, images, spec, seed, skip, progress)


DEMO_PROMPTS = [
    "a red circle moving left quickly",
    "a blue square moving right slowly",
    "a green triangle moving up quickly",
    "a yellow circle moving down slowly",
    "a magenta square staying still",
    "a cyan triangle moving left slowly and a red square moving down quickly",
]


@dataclass(frozen=True)
class Demo:
    """What `write_demo` wrote."""

    folder: Path  # one .mp4 per prompt, grid.gif / grid.mp4 (generated above ideal) and README.txt
    clips: list[str]  # README.txt's line per clip: file, prompt, the oracle's verdict


def write_demo(out: str, model_path: str = "shapes-teacher", seed: int = 0, overrides: dict | None = None,
               progress: bool = True) -> Demo:
    """Sample each demo prompt with the model's own sampler (or `overrides` of it: `spec.override`'s
    keywords), write each clip, a grid of them above their ideal renderings, and README.txt.
    `progress`: say which sampler it uses, and a bar."""
    out_dir = Path(out)
    path = resolve_model_path(model_path)
    choice = choose_sampler(path, **(overrides or {}))
    model = load_denoiser(path).eval()
    world = world_of(model)
    if progress:
        print(choice.line)
    specs = [shapes_spec(p, world, seed + i) for i, p in enumerate(DEMO_PROMPTS)]
    images = torch.stack([s.image for s in specs])
    vids = generate(model, DEMO_PROMPTS, images, choice.spec, seed, progress=progress)
    ideal = torch.stack([shapes.render(s.clip, world) for s in specs])
    lines = []
    for i, (p, v) in enumerate(zip(DEMO_PROMPTS, vids)):
        name = f"{i:02d}_" + "_".join(p.split()[1:4])
        video.write_video(out_dir / f"{name}.mp4", video.to_uint8_frames(v, 8), 4)
        check = shapes.check_clip(v, specs[i].clip, world)
        verdict = ", ".join(f"{o['colour']}: {o['direction']} ({'ok' if o['direction_ok'] else 'WRONG'})" for o in check["objects"])
        lines.append(f"{name}.mp4  {p}  -> oracle: {verdict}")
    # top row: generated, bottom row: the world's ideal rendering of the same prompt and first frame
    both = torch.cat([vids, ideal])
    g = video.grid(both, ncols=len(DEMO_PROMPTS))
    video.write_video(out_dir / "grid.gif", video.to_uint8_frames(g, 6), 4)
    video.write_video(out_dir / "grid.mp4", video.to_uint8_frames(g, 6), 4)
    (out_dir / "README.txt").write_text(
        f"grid.gif: top row = samples of {model_path} ({choice.spec.describe()}), bottom row = the world's ideal clip\n" + "\n".join(lines) + "\n"
    )
    return Demo(out_dir, lines)
