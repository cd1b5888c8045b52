"""Atomic file writes and the project's one JSON rule.

Every output goes to a hidden temporary file (or folder) beside the target and is renamed over it
only once it is complete, so a crash or a bad input never leaves a half-written output
(`atomic_path` for files, used by the writers below and `fastlight.data.video`; `atomic_dir` for
folders such as a saved model).

JSON rule (`to_json_safe`, applied by `atomic_write_json`): non-finite floats (NaN, +inf, -inf)
become null, numpy / torch scalars and arrays become Python numbers and lists, tuples become
lists, paths become strings, keys become strings; the text is strict JSON (`allow_nan=False`),
so any JSON reader parses every file the project writes.

Reading: `read_json_object` and `read_safetensors` are the one place a JSON object or a
safetensors file the user handed over is read; a missing, unreadable or malformed file becomes one
project error naming the path and the fix, never a parser's traceback.
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

from fastlight.errors import DataError, FastlightError, MissingFileError, PathError, make_parent_dir


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed to `path` when the block ends without an error and
    removed otherwise. The temporary name is hidden and ends in `.tmp`, so it never matches a glob
    such as `*.json` or `*.mp4`: writers that pick a format from the suffix must be told the format."""
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the work, with a bare IsADirectoryError
        raise PathError(f"output {path} is a folder; give a file path (or another name)")
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


def read_json_object(path: str | Path, error_type: type[FastlightError] = DataError, fix: str = "rewrite it") -> dict:
    """The JSON object in the file `path`. A missing file is a MissingFileError; a folder, an
    unreadable file, text that is not UTF-8 or not JSON, or JSON that is not an object is an
    `error_type` naming the path and ending in `fix`."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path} does not exist; {fix}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error_type(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); {fix}") from None
    except UnicodeDecodeError:
        raise error_type(f"{path} is not UTF-8 text (not a JSON file); {fix}") from None
    except OSError as e:
        raise error_type(f"{path} cannot be read ({e.strerror or type(e).__name__}); {fix}") from None
    if not isinstance(obj, dict):
        raise error_type(f"{path} must be a JSON object {{...}}, not a {type(obj).__name__}; {fix}")
    return obj


def read_safetensors(path: str | Path, error_type: type[FastlightError] = DataError, fix: str = "",
                     device: str = "cpu") -> dict:
    """Every tensor of the safetensors file `path` ({name: tensor}). A missing file is a
    MissingFileError; a folder, an unreadable file or bytes that are not safetensors (a pickle, random
    bytes, a truncated file) are an `error_type` naming the path (and `fix`, if given)."""
    from safetensors.torch import load_file

    path = Path(path)
    tail = f"; {fix}" if fix else ""
    if not path.exists():
        raise MissingFileError(f"{path} does not exist{tail}")
    if not path.is_file():
        raise error_type(f"{path} is a folder, not a .safetensors file{tail}")
    try:
        return load_file(str(path), device=device)
    except OSError as e:
        raise error_type(f"{path} cannot be read ({e.strerror or type(e).__name__}){tail}") from None
    except Exception as e:  # noqa: BLE001 - SafetensorError, a header that is not JSON, a bad dtype: not safetensors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise error_type(f"{path} is not a readable safetensors file ({first}){tail}") from None

