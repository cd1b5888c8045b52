"""Atomic file writes: a temporary file in the same folder, then a rename, so a crash or a bad
input never leaves a half-written output. Every module writes JSON / text / bytes through these."""
from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # hidden, and never matched as *.json / *.mp4
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj, **dumps_kwargs) -> Path:
    """`obj` as indented JSON (extra json.dumps keywords, e.g. allow_nan=False, pass through)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, **dumps_kwargs) + "\n")
