"""Reading a model folder's weights: safetensors only, every tensor accounted for.

`load_diffusers_module` loads a denoiser's diffusers transformer and refuses weights that do not
match its config.json (a tensor missing, or one the config has no place for: a 16-block file under
`num_layers: 12` would otherwise load a truncated model silently). `load_pretrained` is the one way
any other component folder (a VAE, a text encoder) is loaded: `from_pretrained(...,
use_safetensors=True)`, so a pickle `.bin` is never unpickled, with one-line errors naming the folder.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from safetensors import safe_open
from torch import nn

from fastlight.models.denoiser import ModelError

# library errors that mean "this folder cannot be loaded as that class" (a bug elsewhere still propagates)
LOAD_ERRORS = (RuntimeError, ValueError, OSError, KeyError)


def weight_files(path: Path) -> list[Path]:
    """The folder's *.safetensors weight files (the null-text embedding is not part of the module)."""
    return sorted(w for w in Path(path).glob("*.safetensors") if w.name != "null_text.safetensors")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def tensor_names(files: list[Path]) -> set[str]:
    """Every tensor name stored in the safetensors `files` (one-line ModelError for a file that is not one)."""
    keys: set[str] = set()
    for w in files:
        try:
            with safe_open(str(w), "pt") as f:
                keys |= set(f.keys())
        except Exception as e:  # noqa: BLE001 - SafetensorError and friends: the file is not safetensors
            raise ModelError(f"{w} is not a readable safetensors file ({_first_line(e)}); re-export the model") from None
    return keys


def check_tensors(module: nn.Module, files: list[Path], folder: Path) -> None:
    """Refuse weights that do not cover `module` exactly: missing tensors (re-initialised silently by
    from_pretrained) or unexpected ones (ignored silently: e.g. blocks the config does not have)."""
    stored = tensor_names(files)
    wanted = set(module.state_dict())
    missing, unexpected = sorted(wanted - stored), sorted(stored - wanted)
    if missing:
        raise ModelError(f"{folder}: the weights lack {len(missing)} tensor(s) its config.json needs (e.g. {missing[0]}); "
                         "the checkpoint is incomplete or config.json is wrong: re-export the model or fix config.json")
    if unexpected:
        raise ModelError(f"{folder}: the weights hold {len(unexpected)} tensor(s) its config.json has no place for "
                         f"(e.g. {unexpected[0]}); config.json does not match the weights: fix config.json "
                         "(e.g. num_layers) or re-export the model")


def load_diffusers_module(cls, path: Path, device) -> nn.Module:
    """`cls.from_pretrained(path)` with one-line errors for missing / mismatched / unexpected weights."""
    path = Path(path)
    weights = weight_files(path)
    if not weights:
        raise ModelError(f"{path} has no *.safetensors weights; fastlight only loads safetensors (never pickles)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = cls.from_pretrained(path, use_safetensors=True)
        except LOAD_ERRORS as e:
            raise ModelError(f"weights in {path} do not match its config.json ({_first_line(e)}); "
                             "re-export the model or fix config.json") from None
    check_tensors(model, weights, path)
    return model.to(device).eval()


def load_pretrained(cls, folder: str | Path, what: str, error_type: type[Exception] = ModelError, **kwargs):
    """`cls.from_pretrained(folder, use_safetensors=True, **kwargs)` (diffusers or transformers) for a
    component folder (`what`: "VAE folder", "text encoder folder"): a folder without *.safetensors
    (e.g. only a pickle .bin) or one the library cannot load is one `error_type` line naming it."""
    folder = Path(folder)
    if not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (it holds {', '.join(pickles[:3])}: pickle files, never loaded)" if pickles else ""
        raise error_type(f"{what} {folder} has no *.safetensors weights{found}; fastlight loads safetensors only: "
                         "convert it (save_pretrained(..., safe_serialization=True))")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return cls.from_pretrained(str(folder), use_safetensors=True, **kwargs)
        except LOAD_ERRORS as e:
            raise error_type(f"{what} {folder} cannot be loaded ({_first_line(e)}); re-export it with "
                             "save_pretrained") from None
