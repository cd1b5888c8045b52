"""`fastlight sample` / `fastlight demo`: generate videos from a model folder.

For the embedded Shapes models the prompt is encoded by the shipped Shapes text encoder
and the first frame is either a PNG (`--image`) or drawn from the prompt (`--seed`).
"""
from __future__ import annotations

import json
from pathlib import Path


from fastlight.data import video
from fastlight.models.denoiser import Denoiser, ModelError
from fastlight.models.load import load_denoiser, resolve_model_path
from fastlight.shapes.generate import generate_few_step, generate_shapes, is_shapes_model, shapes_spec, world_of


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
