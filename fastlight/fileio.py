"""Atomic file writes and the project's one JSON rule.

Every output goes to a hidden temporary file (or folder) beside the target and is renamed over it
only once it is complete, so a crash or a bad input never leaves a half-written output
(`atomic_path` for files, used by the writers below and `fastlight.data.video`; `atomic_dir` for
folders such as a saved model).

JSON rule (`to_json_safe`, applied by `atomic_write_json`): non-finite floats (NaN, +inf, -inf)
become null, numpy / torch scalars and arrays become Python numbers and lists, tuples become
lists, paths become strings, keys become strings; the text is strict JSON (`allow_nan=False`),
so any JSON reader parses every file the project writes.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fastlight.errors import make_parent_dir


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to `path` when the block ends without an error and
    removed otherwise. The temporary name is hidden and ends in `.tmp`, so it never matches a glob
    such as `*.json` or `*.mp4`: writers that pick a format from the suffix must be told the format."""
    path = Path(path)
    make_parent_dir(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """A hidden empty temporary folder beside `out`; when the block ends without an error it takes
    `out`'s place in one rename (an existing `out` is moved aside first, put back if the rename
    fails, and deleted after); on an error it is removed and `out` is left as it was."""
    out = Path(out)
    make_parent_dir(out)
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
        try:
            os.replace(tmp, out)
        except BaseException:
            if old.exists():
                os.replace(old, out)
            raise
    finally:
        for p in (tmp, old):
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_json_safe(obj):
    """`obj` with the JSON rule of this module applied, recursively (module doc): NaN / inf -> None.

    Objects of other types are returned unchanged, so `json.dumps` still refuses what it cannot
    write (a bug to fix at the source, not to stringify here)."""
    if isinstance(obj, dict):
        return {str(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalar / array, torch tensor
        return to_json_safe(obj.tolist())
    return obj


def atomic_write_json(path: str | Path, obj, **dumps_kwargs) -> Path:
    """`to_json_safe(obj)` as indented strict JSON (non-finite floats written as null), atomically.
    Extra `json.dumps` keywords (e.g. sort_keys=True) pass through."""
    text = json.dumps(to_json_safe(obj), **{"indent": 2, "allow_nan": False, **dumps_kwargs})
    return atomic_write_text(path, text + "\n")


def atomic_savefig(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks (shard checksums, detector fingerprints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
