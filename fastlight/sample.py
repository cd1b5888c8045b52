"""Generate a video from a model folder with the model's own sampler (the component of `fastlight sample`).

For the embedded Shapes models the prompt is encoded by the shipped Shapes text encoder
and the first frame is either a PNG (`--image`) or drawn from the prompt (`--seed`).
"""
from __future__ import annotations

from pathlib import Path

from fastlight.data import video
from fastlight.diffusion.spec import choose_sampler
from fastlight.errors import InputError, ModelError, make_parent_dir
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import load_denoiser, resolve_model_path
from fastlight.shapes.generate import generate, is_shapes_model, shapes_spec, world_of


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
    raise InputError(f"--backend {backend} is unknown; use torch or onnx")


def sample_video(model_path: str, prompt: str, out: str, image: str | None, seed: int, overrides: dict | None = None,
                 upscale: int = 8, backend: str = "torch", progress: bool = True) -> list[Path]:
    """Write one clip (.mp4 + .gif) with the model's own sampler (its sampler.json), or an explicit
    override of it (`overrides`: `spec.override`'s keywords; a partial override of a few-step
    student is refused); returns the files written. `progress`: say which sampler it uses, and a bar."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides.get("num_steps") is not None and overrides["num_steps"] < 1:
        raise InputError(f"--steps must be >= 1 (got {overrides['num_steps']})")
    out_path = Path(out)
    if out_path.suffix not in (".mp4", ".gif"):
        raise InputError(f"--out {out} must end in .mp4 or .gif")
    make_parent_dir(out_path, "--out")  # fail before loading the model
    model = load_model(model_path, backend)
    if not is_shapes_model(model):
        raise ModelError(
            f"{model_path} is not an embedded Shapes model; for real Wan/HunyuanVideo folders use the Python API "
            "(fastlight.diffusion.sampling.sample with your own text embeddings and VAE)"
        )
    world = world_of(model)
    spec = shapes_spec(prompt, world, seed, image)
    choice = choose_sampler(resolve_model_path(model_path), **overrides)
    if progress:
        print(choice.line)
    vid = generate(model, [prompt], spec.image[None], choice.spec, seed, progress=progress)[0]
    frames = video.to_uint8_frames(vid, upscale)
    fps = 4
    written = [video.write_video(out_path.with_suffix(".mp4"), frames, fps), video.write_video(out_path.with_suffix(".gif"), frames, fps)]
    return written
