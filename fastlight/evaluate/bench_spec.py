"""`fastlight bench --model SPEC`: a model and, optionally, an explicit override of its own sampler.

    runs/student                                  the model's own sampler (its sampler.json)
    shapes-teacher:steps=25                       its own sampler with 25 steps
    runs/stage2/model:sampler=euler,steps=28,guidance=4,skip=4+5
    runs/student:sampler=few_step,timesteps=1000+757+522

Keys: sampler (euler | few_step), steps, guidance (alias cfg), shift (euler), timesteps (few_step;
implies it), skip. The override is resolved against the model's own sampler when the model is
loaded (`ModelSpec.choose`), so a partial override of a few-step student is refused there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from fastlight.diffusion.grids import few_step_grid
from fastlight.diffusion.spec import Choice, SamplerError, choose_sampler
from fastlight.errors import InputError
from fastlight.models.load import resolve_model_path

SPEC_KEYS = ("sampler", "steps", "guidance", "cfg", "shift", "timesteps", "skip")
SAMPLERS = ("euler", "few_step")
SPEC_FORMAT = ("PATH_OR_PRESET[:sampler=euler|few_step,steps=N,guidance=W,shift=S,timesteps=1000+750+500+250,"
               "skip=1+2+3]")


@dataclass(frozen=True)
class ModelSpec:
    """One model to bench: where it is, which parts of its own sampler to override (None: keep),
    and the blocks to skip."""

    path: str
    sampler: str | None = None
    num_steps: int | None = None
    guidance: float | None = None
    shift: float | None = None
    timesteps: tuple[float, ...] | None = None
    skip: tuple[int, ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.path

    def choose(self) -> Choice:
        """The sampler this spec runs: the model's own with the overrides (one-line error naming the spec)."""
        try:
            return choose_sampler(resolve_model_path(self.path), sampler=self.sampler, num_steps=self.num_steps,
                                  guidance=self.guidance, shift=self.shift, timesteps=self.timesteps)
        except SamplerError as e:
            raise SamplerError(f"model spec {self.name!r}: {e}") from None


def _spec_error(text: str, msg: str) -> InputError:
    return InputError(f"model spec {text!r}: {msg} (format: {SPEC_FORMAT})")


def _parse_int(text: str, key: str, value: str, lo: int) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise _spec_error(text, f"{key} must be a whole number >= {lo}, got {value!r}") from None
    if n < lo:
        raise _spec_error(text, f"{key} must be >= {lo}, got {n}")
    return n


def _parse_float(text: str, key: str, value: str) -> float:
    try:
        x = float(value.strip())
    except ValueError:
        raise _spec_error(text, f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise _spec_error(text, f"{key} must be finite, got {value!r}")
    return x


def _split(text: str) -> tuple[str, str]:
    """'path:opts' -> (path, opts); a ':' followed by no key (e.g. 'C:\\models') stays in the path."""
    head, sep, tail = text.rpartition(":")
    looks_like_options = "=" in tail or any(i.strip().lower() in SPEC_KEYS for i in tail.split(","))
    if not sep or not (looks_like_options or not tail.strip()):
        return text, ""
    if not tail.strip():
        raise _spec_error(text, "nothing after ':'; give options like steps=4 or drop the ':'")
    return head.strip(), tail


def _options(text: str, opts: str) -> dict[str, str]:
    raw: dict[str, str] = {}
    for item in opts.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise _spec_error(text, f"option {item.strip()!r} is not key=value")
        if key not in SPEC_KEYS:
            raise _spec_error(text, f"unknown key {key!r}; known keys: {', '.join(SPEC_KEYS)}")
        key = "guidance" if key == "cfg" else key
        if key in raw:
            raise _spec_error(text, f"{key} given twice")
        if not value.strip():
            raise _spec_error(text, f"{key} has no value")
        raw[key] = value.strip()
    return raw


def parse_spec(text: str | ModelSpec) -> ModelSpec:
    """'runs/student:steps=4,sampler=few_step' -> ModelSpec. One-line ValueError on bad input; the
    checks that do not depend on the model are made here, before anything is loaded."""
    if isinstance(text, ModelSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"empty model spec; use {SPEC_FORMAT}")
    text = text.strip()
    path, opts = _split(text)
    if not path:
        raise _spec_error(text, "no model path or preset before ':'")
    raw = _options(text, opts)
    steps = _parse_int(text, "steps", raw["steps"], 1) if "steps" in raw else None
    guidance = _parse_float(text, "guidance", raw["guidance"]) if "guidance" in raw else None
    if guidance is not None and guidance < 0:
        raise _spec_error(text, f"guidance must be >= 0 (1 = no guidance), got {guidance}")
    shift = _parse_float(text, "shift", raw["shift"]) if "shift" in raw else None
    if shift is not None and shift <= 0:
        raise _spec_error(text, f"shift must be > 0, got {shift}")
    skip = tuple(sorted({_parse_int(text, "skip", s, 0) for s in raw["skip"].split("+")})) if "skip" in raw else ()
    timesteps = None
    if "timesteps" in raw:
        timesteps = tuple(_parse_float(text, "timesteps", t) for t in raw["timesteps"].split("+"))
        try:
            few_step_grid(timesteps)
        except ValueError as e:
            raise _spec_error(text, str(e)) from None
    sampler = raw.get("sampler")
    if sampler is not None:
        sampler = sampler.lower().replace("-", "_")
        if sampler not in SAMPLERS:
            raise _spec_error(text, f"sampler must be euler or few_step, got {raw['sampler']!r}")
    kind = sampler or ("few_step" if timesteps is not None else None)
    if kind == "euler" and timesteps is not None:
        raise _spec_error(text, "timesteps only apply to sampler=few_step (euler uses steps and shift)")
    if kind == "few_step" and shift is not None:
        raise _spec_error(text, "shift only applies to sampler=euler (few_step uses timesteps)")
    if timesteps is not None and steps is not None and steps != len(timesteps):
        raise _spec_error(text, f"steps={steps} but {len(timesteps)} timesteps given")
    return ModelSpec(path, sampler, steps, guidance, shift, timesteps, skip, text)
