"""YAML recipes -> typed, flat dataclasses; `key=value` overrides; resolved copy saved.

    cfg = load_config(PretrainConfig, "configs/shapes/pretrain.yaml", ["steps=100", "lr=1e-3"])
    save_config(cfg, run_dir)   # run_dir/config.yaml, the resolved config

Unknown keys and values of the wrong type raise `ConfigError` with a one-line message
naming the key, the file and the fix.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from fastlight.errors import ConfigError, make_dir
from fastlight.fileio import atomic_write_text


def _coerce(name: str, value, typ, where: str):
    """Check/convert `value` to the dataclass field type `typ`."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, args[0], where)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: key '{name}' must be a list, got {value!r}")
        (arg, *_) = typing.get_args(typ) or (typing.Any,)
        items = [v if arg is typing.Any or arg is Ellipsis else _coerce(name, v, arg, where) for v in value]
        return list(items) if origin is list else tuple(items)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: key '{name}' must be true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: key '{name}' must be a {typ.__name__}, got {value!r}")
        try:
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = typ(float(value)) if typ is int and isinstance(value, (str,)) and "e" in value.lower() else typ(value)
            return out
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: key '{name}' must be a {typ.__name__}, got {value!r}") from None
    if typ is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: key '{name}' must be a string, got {value!r}")
        return str(value)
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{name}' must be a mapping, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, where: str = "config"):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    kwargs = {k: _coerce(k, v, hints[k], where) for k, v in data.items()}
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict:
    out = {}
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} must look like key=value")
        k, v = o.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else ""
    return out


def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None):
    data: dict = {}
    where = "config"
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist; see configs/ for the shipped recipes")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must be a mapping of key: value")
        where = str(path)
    cfg = from_dict(cls, data, where)
    if overrides:
        merged = dataclasses.asdict(cfg) | parse_overrides(overrides)
        cfg = from_dict(cls, merged, "command-line override")
    return cfg


def save_config(cfg, run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    make_dir(run_dir)
    return atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
