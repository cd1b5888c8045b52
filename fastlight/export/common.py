"""What every export format shares: finding the student in a run, its sampler, and an atomic
output folder (built beside DIR under a hidden name, renamed into place at the end)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fastlight.models.denoiser import ModelError
from fastlight.models.load import resolve_model_path

# the small files of a fastlight model folder that describe it (besides config.json + weights)
META_FILES = ("config.json", "fastlight.json", "null_text.safetensors", "sampler.json", "manifest.json", "plan.json")


@dataclass(frozen=True)
class SamplerSpec:
    """How a model is sampled: `few_step` (stochastic, at `s_list`) or `euler` (shifted grid, `steps`)."""

    kind: str  # "few_step" | "euler"
    cfg_scale: float
    s_list: tuple[float, ...] = ()  # few_step: noise levels s_i = timestep_i / 1000
    steps: int = 50  # euler: default number of steps
    shift: float = 3.0  # euler: the grid's shift

    @property
    def num_inference_steps(self) -> int:
        return len(self.s_list) if self.kind == "few_step" else self.steps

    def to_json(self) -> dict:
        d = {"sampler": self.kind, "cfg_scale": self.cfg_scale, "num_inference_steps": self.num_inference_steps}
        if self.kind == "few_step":
            d.update(timesteps=[1000.0 * s for s in self.s_list], s_list=list(self.s_list))
        else:
            d.update(shift=self.shift)
        return d


def find_model_dir(run: str | Path) -> Path:
    """RUN (a run folder with model/, a model folder, a pipeline folder with transformer/, or a
    preset name) -> the folder holding the student's config.json. One-line errors otherwise."""
    path = resolve_model_path(str(run))
    if not path.exists():
        raise FileNotFoundError(f"{run} does not exist; pass a run folder (with model/) or a model folder")
    if not path.is_dir():
        raise ModelError(f"{run} is a file; pass a run folder (with model/) or a model folder")
    for cand in (path, path / "model", path / "transformer"):
        if (cand / "config.json").is_file():
            return cand
    if (path / "checkpoints").is_dir():
        raise ModelError(f"{run} has no finished generator (no model/ folder, only checkpoints/); "
                         "let `fastlight train` finish (it writes model/ at the end), then export")
    raise ModelError(f"{run} holds no model: expected config.json, model/config.json or transformer/config.json")


def read_sampler(model_dir: Path, meta: dict) -> SamplerSpec:
    """The student's sampler from sampler.json (few-step students), else Euler with the model's
    shift, 50 steps and CFG 4 (the teacher's defaults)."""
    from fastlight.diffusion.sampling import few_step_grid

    f = model_dir / "sampler.json"
    raw = json.loads(f.read_text()) if f.is_file() else meta.get("sampler")
    shift = float(meta.get("shift", 3.0))
    if not raw:
        return SamplerSpec("euler", 4.0, steps=50, shift=shift)
    kind = raw.get("sampler", "few_step")
    if kind == "euler":
        return SamplerSpec("euler", float(raw.get("cfg_scale", 4.0)), steps=int(raw.get("steps", 50)),
                           shift=float(raw.get("shift", shift)))
    if kind != "few_step":
        raise ModelError(f"{f}: unknown sampler {kind!r}; expected 'few_step' or 'euler'")
    if "timesteps" in raw:
        s_list = few_step_grid(raw["timesteps"])
    elif "s_list" in raw:
        s_list = few_step_grid([1000.0 * s for s in raw["s_list"]])
    else:
        raise ModelError(f"{f} has no timesteps; expected e.g. \"timesteps\": [1000, 750, 500, 250]")
    return SamplerSpec("few_step", float(raw.get("cfg_scale", 1.0)), s_list=tuple(s_list), shift=shift)


def check_out_dir(out: str | Path, overwrite: bool, sources: tuple[Path, ...] = ()) -> Path:
    """Refuse an output folder that is a file, holds the source, or is not empty (unless overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; pass a folder")
    res = out.resolve()
    for src in sources:
        src = Path(src).resolve()
        if res == src or res in src.parents:
            raise ValueError(f"--out {out} would overwrite the model being exported ({src}); pick another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    return out


@contextlib.contextmanager
def atomic_dir(out: Path):
    """Yield a hidden temporary folder beside `out`; on success it replaces `out` in one rename
    (an existing `out` is moved aside first and deleted after), on failure it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    old = out.with_name(f".{out.name}.{os.getpid()}.old")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        for p in (tmp, old):
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)


def link_or_copy(src: str, dst: str) -> str:
    """Hard-link a file (large VAE / text-encoder weights cost no space), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def copy_meta_files(model_dir: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """The student's small description files (config, fastlight.json, null text, sampler, plan)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in META_FILES:
        if name not in skip and (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, dst / name)
