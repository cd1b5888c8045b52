"""`fastlight sample` / `fastlight demo`: generate videos from a model folder.

For the embedded Shapes models the prompt is encoded by the shipped Shapes text encoder
and the first frame is either a PNG (`--image`) or drawn from the prompt (`--seed`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fastlight.data import shapes, text, video
from fastlight.diffusion import sampling
from fastlight.models.denoiser import Cond, Denoiser, ModelError, load_denoiser
from fastlight.models.presets import resolve_model_path


@dataclass
class ShapesSampleSpec:
    prompt: str
    image: torch.Tensor  # (3, H, W) in [-1, 1]
    clip: shapes.Clip | None  # the ideal clip when the first frame was drawn from the prompt


def world_of(model: Denoiser) -> shapes.WorldConfig:
    w = model.meta.get("world")
    if w is None:
        raise ValueError("this model has no Shapes world in its fastlight.json; it is not an embedded Shapes model")
    return shapes.WorldConfig(size=w["size"], num_frames=w["num_frames"])


def is_shapes_model(model: Denoiser) -> bool:
    return "world" in model.meta


def shapes_spec(prompt: str, world: shapes.WorldConfig, seed: int, image_path: str | None = None) -> ShapesSampleSpec:
    specs = text.parse(prompt)  # raises PromptError with the vocabulary
    if image_path is not None:
        return ShapesSampleSpec(prompt, video.read_image(image_path, world.size), None)
    clip = shapes.place_objects(specs, torch.Generator().manual_seed(seed), world)
    return ShapesSampleSpec(prompt, shapes.render(clip, world)[:, 0], clip)


def generate_shapes(
    model: Denoiser,
    prompts: list[str],
    images: torch.Tensor,
    num_steps: int = 50,
    cfg_scale: float = 4.0,
    seed: int = 0,
    shift: float | None = None,
    skip=(),
    progress: bool = False,
) -> torch.Tensor:
    """Sample Shapes videos. images: (B, 3, H, W) first frames. Returns (B, 3, F, H, W)."""
    if num_steps < 1:
        raise ValueError(f"steps must be >= 1 (got {num_steps})")
    world = world_of(model)
    B = len(prompts)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(B, 3, world.num_frames, world.size, world.size, generator=gen)
    cond = Cond(text.encode(prompts), images[:, :, None])
    grid = sampling.shifted_grid(num_steps, shift if shift is not None else model.meta.get("shift", 3.0))
    return sampling.euler_sample(model, noise, cond, grid, cfg_scale=cfg_scale, skip=skip, progress=progress).clamp(-1, 1)


def load_model(model_path: str, backend: str = "torch") -> Denoiser:
    """The model behind `--model` for a backend: torch (a diffusers folder, a run folder with model/,
    or an exported pipeline folder) or onnx (a folder from `fastlight export --format onnx`, run with onnxruntime)."""
    path = resolve_model_path(model_path)
    if backend == "torch":
        if not (path / "config.json").exists() and (path / "model" / "config.json").is_file():
            path = path / "model"  # a run folder: its finished generator
        return load_denoiser(path).eval()
    if backend == "onnx":
        from fastlight.export.to_onnx import OnnxDenoiser

        if not path.is_dir():
            raise ModelError(f"--model {model_path} is not a folder; pass the folder written by "
                             "`fastlight export MODEL --format onnx --out DIR`")
        return OnnxDenoiser.from_folder(path)
    raise ValueError(f"--backend {backend} is unknown; use torch or onnx")


def model_sampler(model_path: str):
    """The model's own sampler (sampler.json of a few-step student), or None for Euler models."""
    from fastlight.export.common import find_model_dir, read_sampler

    path = resolve_model_path(model_path)
    model_dir = path if (path / "sampler.json").is_file() else find_model_dir(path)
    meta_file = model_dir / "fastlight.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    spec = read_sampler(model_dir, meta)
    return spec if spec.kind == "few_step" else None


def generate_few_step(model: Denoiser, prompts: list[str], images: torch.Tensor, s_list, cfg_scale: float = 1.0,
                      seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Sample Shapes videos with a student's stochastic few-step sampler. The noise and then the
    re-noising eps come from ONE generator seeded `seed` (the stream a stock diffusers pipeline
    uses after `torch.manual_seed(seed)`). images: (B, 3, H, W). Returns (B, 3, F, H, W)."""
    world = world_of(model)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(prompts), 3, world.num_frames, world.size, world.size, generator=gen)
    cond = Cond(text.encode(prompts), images[:, :, None])
    return sampling.few_step_sample(model, noise, cond, list(s_list), generator=gen, cfg_scale=cfg_scale,
                                    progress=progress).clamp(-1, 1)


def sample_command(model_path: str, prompt: str, out: str, image: str | None, num_steps: int, cfg_scale: float,
                   seed: int, shift: float | None, upscale: int = 8, backend: str = "torch") -> list[Path]:
    """Write one clip (.mp4 + .gif). A few-step student (sampler.json) runs its own sampler, its
    timesteps and CFG; `num_steps` / `cfg_scale` / `shift` apply to Euler models (None: 50 steps, CFG 4)."""
    if num_steps is not None and num_steps < 1:
        raise ValueError(f"--steps must be >= 1 (got {num_steps})")
    out_path = Path(out)
    if out_path.suffix not in (".mp4", ".gif"):
        raise ValueError(f"--out {out} must end in .mp4 or .gif")
    model = load_model(model_path, backend)
    if not is_shapes_model(model):
        raise ValueError(
            f"{model_path} is not an embedded Shapes model; for real Wan/HunyuanVideo folders use the Python API "
            "(fastlight.diffusion.sampling.euler_sample with your own text embeddings and VAE)"
        )
    world = world_of(model)
    spec = shapes_spec(prompt, world, seed, image)
    student = model_sampler(model_path)
    if student is not None and (num_steps is not None or cfg_scale is not None):
        raise ValueError(f"{model_path} is a few-step student: it samples at its trained timesteps "
                         f"{[round(1000 * s) for s in student.s_list]} with its own CFG (sampler.json); drop --steps/--cfg")
    num_steps = 50 if num_steps is None else num_steps
    cfg_scale = 4.0 if cfg_scale is None else cfg_scale
    if student is not None:
        print(f"few-step student: timesteps {[round(1000 * s) for s in student.s_list]}, cfg {student.cfg_scale:g} "
              "(from its sampler.json)")
        vid = generate_few_step(model, [prompt], spec.image[None], student.s_list, student.cfg_scale, seed, progress=True)[0]
    else:
        vid = generate_shapes(model, [prompt], spec.image[None], num_steps, cfg_scale, seed, shift, progress=True)[0]
    frames = video.to_uint8_frames(vid, upscale)
    fps = 4
    written = [video.write_video(out_path.with_suffix(".mp4"), frames, fps), video.write_video(out_path.with_suffix(".gif"), frames, fps)]
    return written


DEMO_PROMPTS = [
    "a red circle moving left quickly",
    "a blue square moving right slowly",
    "a green triangle moving up quickly",
    "a yellow circle moving down slowly",
    "a magenta square staying still",
    "a cyan triangle moving left slowly and a red square moving down quickly",
]


def demo_command(out: str, model_path: str = "shapes-teacher", num_steps: int = 50, cfg_scale: float = 4.0, seed: int = 0) -> Path:
    """Sample each demo prompt, write each clip and a labelled grid next to its ideal rendering."""
    out_dir = Path(out)
    model = load_denoiser(resolve_model_path(model_path)).eval()
    world = world_of(model)
    specs = [shapes_spec(p, world, seed + i) for i, p in enumerate(DEMO_PROMPTS)]
    images = torch.stack([s.image for s in specs])
    vids = generate_shapes(model, DEMO_PROMPTS, images, num_steps, cfg_scale, seed, progress=True)
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
        "grid.gif: top row = teacher samples (50 Euler steps, CFG), bottom row = the world's ideal clip\n" + "\n".join(lines) + "\n"
    )
    for line in lines:
        print(line)
    return out_dir
