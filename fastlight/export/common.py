"""What every export format shares: finding the student in a run, and an atomic
output folder (built beside DIR under a hidden name, renamed into place at the end)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from fastlight.diffusion.spec import model_folder
from fastlight.errors import InputError, MissingFileError, OutputExistsError
from fastlight.models.denoiser import ModelError
from fastlight.models.load import resolve_model_path

# the small files of a fastlight model folder that describe it (besides config.json + weights)
META_FILES = ("config.json", "fastlight.json", "null_text.safetensors", "sampler.json", "manifest.json", "plan.json")


def find_model_dir(run: str | Path) -> Path:
    """RUN (a run folder with model/, a model folder, a pipeline folder with transformer/, or a
    preset name) -> the folder holding the student's config.json. One-line errors otherwise."""
    path = resolve_model_path(str(run))
    if not path.exists():
        raise MissingFileError(f"{run} does not exist; pass a run folder (with model/) or a model folder")
    if not path.is_dir():
        raise ModelError(f"{run} is a file; pass a run folder (with model/) or a model folder")
    found = model_folder(path)
    if found is not None:
        return found
    if (path / "checkpoints").is_dir():
        raise ModelError(f"{run} has no finished generator (no model/ folder, only checkpoints/); "
                         "let `fastlight train` finish (it writes model/ at the end), then export")
    raise ModelError(f"{run} holds no model: expected config.json, model/config.json or transformer/config.json")


def check_out_dir(out: str | Path, overwrite: bool, sources: tuple[Path, ...] = ()) -> Path:
    """Refuse an output folder that is a file, holds the source, or is not empty (unless overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} is a file; pass a folder")
    res = out.resolve()
    for src in sources:
        src = Path(src).resolve()
        if res == src or res in src.parents:
            raise InputError(f"--out {out} would overwrite the model being exported ({src}); pick another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    return out


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
