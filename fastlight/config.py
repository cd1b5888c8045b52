"""YAML recipes -> typed, flat dataclasses; `key=value` overrides; resolved copy saved.

    cfg = load_config(PretrainConfig, "configs/shapes/pretrain.yaml", ["steps=100", "lr=1e-3"])
    save_config(cfg, run_dir)   # run_dir/config.yaml, the resolved config

Unknown keys, values of the wrong type and numbers out of range raise `ConfigError` with a one-line
message naming the key, the file and the fix, when the config is built (before any work). Ranges
(`check_ranges`): every float must be finite; a field's `metadata={"range": (low, high)}` bounds it
(None = open end), else a field named in RANGES is bounded by that entry (the same name means the
same thing in every recipe: `steps`, `batch_size`, `threads`, `lr`, ...).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
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


# (low, high): the inclusive bounds of a numeric field of that name in any config (None = no bound);
# a bound in GT / LT is strict. Names not listed are only checked for finiteness.
AT_LEAST_1 = (1, None)
AT_LEAST_0 = (0, None)
RANGES: dict[str, tuple] = {
    **{k: AT_LEAST_1 for k in (
        "steps", "batch_size", "threads", "grad_accum", "save_every", "keep_last", "log_every", "critic_steps",
        "calib", "metric_cases", "eval_cases", "teacher_steps", "bench_repeats", "disc_channels", "tiny_width",
        "collapse_patience")},
    **{k: AT_LEAST_0 for k in (
        "warmup_steps", "mca_warmup_steps", "phase1_steps", "seed", "data_seed", "num_layers", "size", "num_frames",
        "short_frames", "weight_decay", "grad_clip", "lambda_icd", "lambda_mca", "w_output", "w_layer", "l1_weight",
        "feature_weight", "gan_weight", "gan_critic_weight", "collapse_std", "cfg_scale", "guide_beta2",
        "instance_noise_min", "instance_noise_max")},
    **{k: (0, 1) for k in ("cfg_dropout", "min_lr_ratio", "p", "alpha", "s_min", "s_max", "beta1", "beta2",
                           "ema_decay", "p_two_objects")},
    **{k: (0, None) for k in ("lr", "disc_lr", "critic_lr", "shift")},
}
GT = {"lr", "disc_lr", "critic_lr", "shift"}  # strictly above the low bound
LT = {"beta2", "ema_decay"}  # strictly below the high bound


def _bounds_text(name: str, low, high) -> str:
    """'>= 1', '> 0', 'in [0, 1)' ..."""
    if low is not None and high is not None:
        return f"in {'(' if name in GT else '['}{low}, {high}{')' if name in LT else ']'}"
    if low is not None:
        return f"{'>' if name in GT else '>='} {low}"
    return f"{'<' if name in LT else '<='} {high}"


def _in_range(name: str, v, low, high) -> bool:
    if low is not None and (v <= low if name in GT else v < low):
        return False
    return high is None or (v < high if name in LT else v <= high)


def check_ranges(cfg, where: str = "config") -> None:
    """Refuse a non-finite float and a number out of its field's range (module doc), naming the key."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            continue
        default = f" (default {f.default!r})" if f.default is not dataclasses.MISSING else ""
        if not math.isfinite(v):
            raise ConfigError(f"{where}: {f.name} must be a finite number, got {v!r}; "
                              f"set {f.name}= to a finite value{default}")
        low, high = f.metadata.get("range", RANGES.get(f.name, (None, None)))
        if not _in_range(f.name, v, low, high):
            raise ConfigError(f"{where}: {f.name} must be {_bounds_text(f.name, low, high)}, got {v!r}; "
                              f"set {f.name}= to a value in range{default}")


def from_dict(cls, data: dict, where: str = "config"):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    kwargs = {k: _coerce(k, v, hints[k], where) for k, v in data.items()}
    cfg = cls(**kwargs)
    check_ranges(cfg, where)
    return cfg


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
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} cannot be read ({type(e).__name__}); give a YAML recipe file") from None
        if data is None or data == {}:
            # an empty recipe would silently run every default: almost never what was meant
            raise ConfigError(f"config file {path} is empty; give a recipe with at least one key "
                              "(see configs/shapes/ for the shipped recipes)")
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
