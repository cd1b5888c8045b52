"""The project's own error types (DESIGN.md section 3).

A `FastlightError` means bad input or a refused state: its message is one line naming the problem
and the fix, and `fastlight <verb>` prints it and exits with code 2. Any other exception is a bug
and shows its traceback. Each kind keeps the builtin base it replaced (ValueError, FileNotFoundError,
...) so callers that catch the builtin keep working.
"""
from __future__ import annotations

import os
from pathlib import Path


class FastlightError(Exception):
    """Bad input or a refused state; the message is one line naming the problem and the fix."""


class InputError(FastlightError, ValueError):
    """A wrong option or value (a flag out of range, an unknown name, arguments that do not fit)."""


class UsageError(InputError):
    """A command line the argument parser refused (an unknown option, a value of the wrong type)."""


class ConfigError(InputError):
    """A config that does not fit: an unknown key, a wrong type, a value out of range."""


class PluginError(InputError):
    """An unknown or broken plug-in (model preset, data source, benchmark) name."""


class ModelError(InputError):
    """A model folder or preset that cannot be loaded or does not fit the request."""


class DataError(InputError):
    """A data source, shard folder, video or latent file that cannot be read or does not fit."""


class SamplerError(InputError):
    """A sampler (SamplerSpec, sampler.json or an override) that is invalid."""


class PlanError(InputError):
    """A prune plan (plan.json, a ratio, an importance file) that is invalid or does not fit the model."""


class MissingFileError(FastlightError, FileNotFoundError):
    """A file or folder the user named (or a stage needs) does not exist."""


class OutputExistsError(FastlightError, FileExistsError):
    """An output that would be overwritten without being asked to."""


class PathError(FastlightError, OSError):
    """A path the user named cannot be used: not a folder, not writable, no permission."""


class NonFiniteError(FastlightError, FloatingPointError):
    """Training stopped on a non-finite loss or gradient."""


class CollapseError(FastlightError, RuntimeError):
    """Stage III's collapse guard stopped a run (the generator's samples stopped moving)."""


def make_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create the folder `path` (and its parents); an OSError becomes a PathError naming it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PathError(f"{what} {p}: cannot create it ({_reason(e)}); give a writable folder path") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise PathError(f"{what} {p} is not writable; give a writable folder path")
    return p


def check_dir_creatable(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, before any work and without creating anything, a folder path that cannot be made:
    its nearest existing ancestor must be a writable folder (and `path` itself, if it exists, one)."""
    p = Path(path)
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        reason = "a file of that name exists" if q == p else f"a part of the path, {q}, is a file"
        raise PathError(f"{what} {p}: cannot create it ({reason}); give a writable folder path")
    if not os.access(q, os.W_OK | os.X_OK):
        raise PathError(f"{what} {p}: {q} is not writable; give a writable folder path")
    return p


def make_parent_dir(path: str | os.PathLike, what: str = "output") -> Path:
    """Create the folder the file or folder `path` goes into; an OSError becomes a PathError naming it."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PathError(f"{what} {p}: cannot create its folder {p.parent} ({_reason(e)}); "
                        "give a path in a writable folder") from None
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise PathError(f"{what} {p}: its folder {p.parent} is not writable; give a path in a writable folder")
    return p


def _reason(e: OSError) -> str:
    if isinstance(e, FileExistsError):
        return "a file of that name exists"
    if isinstance(e, NotADirectoryError):
        return "a part of the path is a file"
    return e.strerror or type(e).__name__
