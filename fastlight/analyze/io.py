"""Small helpers shared by the analysis modules: atomic JSON / figure writes, the weight-fingerprint check."""
from __future__ import annotations

import math
import os
from pathlib import Path

from fastlight import fileio
from fastlight.errors import InputError, MissingFileError
from fastlight.models.load import model_fingerprint


def _finite_or_none(obj):
    """NaN / inf floats -> None (strict JSON), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj) -> Path:
    """Write `obj` as JSON to `path` via a temporary file and a rename (never a half-written file)."""
    return fileio.atomic_write_json(path, _finite_or_none(obj), allow_nan=False)


def read_json(path: str | Path, what: str) -> dict:
    """The JSON object in the `what` file `path` (one-line error naming it if it is missing or malformed)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{what} file {path} does not exist; run fastlight analyze first (or check the path)")
    return fileio.read_json_object(path, InputError, f"it is not a {what} file: re-run fastlight analyze")


def atomic_savefig(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def check_fingerprint(doc: dict, model, what: str, rerun: str = "re-run fastlight analyze", made: str = "computed on") -> None:
    """Refuse an analysis file computed on another model than `model` (its weights: one-line ValueError)."""
    fp = model_fingerprint(model)
    if doc["fingerprint"] != fp:
        raise InputError(f"{what} was {made} another model (fingerprint {doc['fingerprint']}, this model {fp}); {rerun}")
