"""Loading models: the {diffusers class: adapter} registry, presets, fingerprints.

    model = load_denoiser("Wan2.1-T2V-1.3B-Diffusers/transformer")   # a Denoiser (models/denoiser.py)
    path = resolve_model_path("shapes-teacher")                       # a registered preset, or a path

The registry maps a diffusers transformer class name (config.json's `_class_name`) to the
adapter that implements the denoiser contract for it; adding a model family means adding an
adapter module and a row here. Presets are plug-in entry points (fastlight/plugins.py).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from fastlight.fileio import read_json_object
from fastlight.models.denoiser import Denoiser, ModelError
from fastlight.models.hunyuan import HunyuanDenoiser
from fastlight.models.wan import WanDenoiser
from fastlight.plugins import component, registered

ADAPTERS: dict[str, type[Denoiser]] = {
    "WanTransformer3DModel": WanDenoiser,
    "HunyuanVideoTransformer3DModel": HunyuanDenoiser,
}


PIPELINE_COMPONENTS = "fastlight.pipeline_components"  # entry points: plug-in classes a pipeline folder names


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A registered model preset (entry point group `fastlight.models`, e.g. 'shapes-teacher')
    -> its folder; anything else is a path. A pipeline folder's plug-in components are imported
    (`import_pipeline_components`), so the stock diffusers loader finds them."""
    name = str(name_or_path)
    path = Path(component("fastlight.models", name)()) if name in registered("fastlight.models") else Path(name)
    import_pipeline_components(path)
    return path


def import_pipeline_components(folder: str | Path) -> list[str]:
    """Import the plug-in classes a diffusers pipeline folder's model_index.json names (e.g. the Shapes
    phrase encoder, ["fastlight.shapes.text_model", "ShapesPhraseEncoder"]); return their entry-point names.
    diffusers takes a component from a library other than its own only from `sys.modules` (it imports no
    module a folder names); this imports exactly the classes installed plug-ins register in the entry
    point group `fastlight.pipeline_components` ("module:Class"), never a module the folder alone names."""
    index_file = Path(folder) / "model_index.json"
    if not index_file.is_file():
        return []
    index = read_json_object(index_file, ModelError, "re-download the pipeline")
    named = {f"{v[0]}:{v[1]}" for v in index.values()
             if isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)}
    found = [name for name, value in sorted(registered(PIPELINE_COMPONENTS).items()) if value in named]
    for name in found:
        component(PIPELINE_COMPONENTS, name)
    return found


def load_denoiser(path: str | Path, device: str | torch.device = "cpu") -> Denoiser:
    """Load any supported diffusers transformer folder as a Denoiser (clear errors on bad input)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model folder {path} does not exist; pass a diffusers transformer folder or a model preset name")
    if path.is_file():
        raise ModelError(f"{path} is a file; pass the diffusers model folder that holds config.json and the safetensors")
    cfg_file = path / "config.json"
    if not cfg_file.exists() and (path / "transformer" / "config.json").exists():
        path, cfg_file = path / "transformer", path / "transformer" / "config.json"
    if not cfg_file.exists():
        raise ModelError(f"{path} has no config.json: not a diffusers model folder (save one with `save_pretrained`)")
    cfg = read_json_object(cfg_file, ModelError, "re-export the model")
    cls = cfg.get("_class_name")
    if cls not in ADAPTERS:
        raise ModelError(f"{cfg_file} names class {cls!r}; fastlight supports {' and '.join(ADAPTERS)}")
    return ADAPTERS[cls].from_folder(path, device)


def model_fingerprint(denoiser: Denoiser) -> str:
    """A short id of a model's architecture and weights (class, config, every tensor's name,
    shape and a strided sample of its values), to tie analysis files and plans to the model
    they were computed on without hashing gigabytes."""
    h = hashlib.sha256()
    h.update(type(denoiser.model).__name__.encode())
    cfg = {k: v for k, v in dict(denoiser.model.config).items() if not k.startswith("_")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, t in denoiser.model.state_dict().items():
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // 64)
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(flat[::step][:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def architecture(denoiser: Denoiser) -> dict:
    """A model's architecture, not its weights: the diffusers class, its public config and the
    block layout (global id -> kind). Training (Stage II) changes the weights, never this."""
    cfg = {k: v for k, v in dict(denoiser.model.config).items() if not k.startswith("_")}
    return {
        "class": type(denoiser.model).__name__,
        "config": json.loads(json.dumps(cfg, sort_keys=True, default=str)),  # tuples -> lists, as on disk
        "blocks": [b.kind for b in denoiser.blocks],
    }


def architecture_fingerprint(denoiser: Denoiser) -> str:
    """A short id of `architecture(denoiser)` plus every parameter's name and shape (no values):
    equal for a teacher and the Stage II model trained from it, different once a block, a head or
    an FFN unit is removed."""
    h = hashlib.sha256(json.dumps(architecture(denoiser), sort_keys=True).encode())
    for name, p in denoiser.model.named_parameters():
        h.update(f"{name}:{tuple(p.shape)}".encode())
    return h.hexdigest()[:16]
