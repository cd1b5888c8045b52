"""Reading a diffusers model folder's weights: safetensors only, every tensor accounted for."""
from __future__ import annotations

import warnings
from pathlib import Path

from safetensors import safe_open
from torch import nn

from fastlight.models.denoiser import ModelError


def load_diffusers_module(cls, path: Path, device) -> nn.Module:
    """`cls.from_pretrained(path)` with one-line errors for missing / mismatched weights."""
    weights = list(path.glob("*.safetensors"))
    weights = [w for w in weights if w.name != "null_text.safetensors"]
    if not weights:
        raise ModelError(f"{path} has no *.safetensors weights; fastlight only loads safetensors (never pickles)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = cls.from_pretrained(path, use_safetensors=True)
        except (RuntimeError, ValueError, OSError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(
                f"weights in {path} do not match its config.json ({first[:300]}); "
                "re-export the model or fix config.json"
            ) from None
    # from_pretrained silently re-initialises missing keys only with low_cpu_mem_usage=False;
    # check the weights really cover the module.
    keys: set[str] = set()
    for w in weights:
        with safe_open(str(w), "pt") as f:
            keys |= set(f.keys())
    missing = [k for k in model.state_dict() if k not in keys]
    if missing:
        raise ModelError(f"{path}: weights lack {len(missing)} tensors (e.g. {missing[0]}); the checkpoint is incomplete")
    return model.to(device).eval()
