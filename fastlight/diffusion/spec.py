"""`SamplerSpec`: how a model samples, one frozen value, saved once per model folder as `sampler.json`.

    SamplerSpec.euler(num_steps=50, guidance=4.0, shift=3.0)    # N Euler steps on shifted_grid(N, shift)
    SamplerSpec.few_step((1000, 750, 500, 250), guidance=1.0)   # a distilled student's stochastic sampler

guidance is w in v_cfg = v_u + w (v_c - v_u) (DMD2 / diffusers form); w = 1 runs one forward per
step. `fastlight sample`, `evaluate`, `bench`, `export`, `run` and `search` read a model's own
sampler with `choose_sampler(path)`; an explicit override goes through `override` (which refuses
the partial overrides that make no sense for a few-step student) and is reported as such.

sampler.json:
    {"sampler": "euler", "num_steps": 50, "guidance": 4.0, "shift": 3.0}
    {"sampler": "few_step", "num_steps": 4, "guidance": 1.0, "timesteps": [1000.0, 750.0, 500.0, 250.0]}
Compatibility: students distilled before 2026-12-01 hold the older form
{"sampler": "few_step", "timesteps": [...], "s_list": [...], "cfg_scale": 1.0}; `from_json` still reads
it (`cfg_scale` -> guidance, `s_list` ignored: the timesteps define the levels).
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fastlight.diffusion.grids import even_timesteps, few_step_grid, shifted_grid
from fastlight.errors import SamplerError
from fastlight.fileio import atomic_write_json, read_json_object

FILE = "sampler.json"
KINDS = ("euler", "few_step")
DEFAULT_EULER_STEPS = 50
DEFAULT_EULER_GUIDANCE = 4.0
DEFAULT_SHIFT = 3.0
DEFAULT_FEW_STEP_TIMESTEPS = (1000.0, 750.0, 500.0, 250.0)
DEFAULT_FEW_STEP_GUIDANCE = 1.0
# the folders a model may sit in: itself, a run folder's model/, an exported pipeline's transformer/
MODEL_SUBFOLDERS = ("", "model", "transformer")


@dataclass(frozen=True)
class SamplerSpec:
    """kind "euler": `num_steps` Euler steps on `shifted_grid(num_steps, shift)`; kind "few_step":
    the stochastic sampler at s = timesteps / 1000 (num_steps == len(timesteps), shift None)."""

    kind: str
    num_steps: int
    guidance: float
    shift: float | None = None
    timesteps: tuple[float, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SamplerError(f"sampler must be euler or few_step, got {self.kind!r}")
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, numbers.Integral) or self.num_steps < 1:
            raise SamplerError(f"steps must be a whole number >= 1, got {self.num_steps!r}")
        object.__setattr__(self, "num_steps", int(self.num_steps))
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, numbers.Real) \
                or not math.isfinite(self.guidance) or self.guidance < 0:
            raise SamplerError(f"guidance must be a finite number >= 0 (1 = no guidance), got {self.guidance!r}")
        object.__setattr__(self, "guidance", float(self.guidance))
        if self.kind == "euler":
            if self.timesteps:
                raise SamplerError("timesteps only apply to the few_step sampler (euler uses steps and shift)")
            if self.shift is None or not math.isfinite(self.shift) or self.shift <= 0:
                raise SamplerError(f"the euler sampler needs a shift > 0, got {self.shift!r}")
            object.__setattr__(self, "shift", float(self.shift))
        else:
            if self.shift is not None:
                raise SamplerError("shift only applies to the euler sampler (few_step uses timesteps)")
            try:
                few_step_grid(self.timesteps)
            except ValueError as e:
                raise SamplerError(str(e)) from None
            object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))
            if self.num_steps != len(self.timesteps):
                raise SamplerError(f"steps={self.num_steps} but {len(self.timesteps)} timesteps given")

    # ---- constructors ----
    @classmethod
    def euler(cls, num_steps: int = DEFAULT_EULER_STEPS, guidance: float = DEFAULT_EULER_GUIDANCE,
              shift: float = DEFAULT_SHIFT) -> "SamplerSpec":
        return cls("euler", num_steps, guidance, shift=shift)

    @classmethod
    def few_step(cls, timesteps=DEFAULT_FEW_STEP_TIMESTEPS, guidance: float = DEFAULT_FEW_STEP_GUIDANCE) -> "SamplerSpec":
        timesteps = tuple(float(t) for t in timesteps)
        return cls("few_step", len(timesteps), guidance, timesteps=timesteps)

    # ---- what the samplers and the reports need ----
    @property
    def levels(self) -> list[float]:
        """The noise levels: euler, the N + 1 levels of shifted_grid (ending at 0); few_step, the K
        levels the network is evaluated at (no terminal 0)."""
        if self.kind == "euler":
            return shifted_grid(self.num_steps, self.shift).tolist()
        return few_step_grid(self.timesteps)

    @property
    def nfe(self) -> int:
        """Network evaluations per video: steps x (2 if guidance != 1, cond and uncond, else 1)."""
        return self.num_steps * (1 if self.guidance == 1 else 2)

    def describe(self) -> str:
        """One phrase, e.g. '50 Euler steps (shift 3), guidance 4' or '4 few-step steps at timesteps
        1000/750/500/250, no guidance'."""
        w = "no guidance" if self.guidance == 1 else f"guidance {self.guidance:g}"
        steps = "step" if self.num_steps == 1 else "steps"
        if self.kind == "euler":
            return f"{self.num_steps} Euler {steps} (shift {self.shift:g}), {w}"
        return f"{self.num_steps} few-step {steps} at timesteps {'/'.join(f'{t:g}' for t in self.timesteps)}, {w}"

    # ---- files ----
    def to_json(self) -> dict:
        d = {"sampler": self.kind, "num_steps": self.num_steps, "guidance": self.guidance}
        if self.kind == "euler":
            d["shift"] = self.shift
        else:
            d["timesteps"] = list(self.timesteps)
        return d

    @classmethod
    def from_json(cls, d: dict, where: str = FILE) -> "SamplerSpec":
        if not isinstance(d, dict):
            raise SamplerError(f"{where} must hold a JSON object like {SamplerSpec.euler().to_json()}")
        if "cfg_scale" in d and "guidance" not in d:  # the older form (see the module doc)
            d = {"sampler": d.get("sampler", "few_step"), "guidance": d["cfg_scale"],
                 **{k: d[k] for k in ("timesteps", "shift", "num_steps") if k in d}}
        known = {"sampler", "num_steps", "guidance", "shift", "timesteps"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SamplerError(f"{where}: unknown key(s) {unknown}; a sampler.json holds {sorted(known)}")
        kind = d.get("sampler")
        try:
            if kind == "euler":
                return cls.euler(d.get("num_steps", DEFAULT_EULER_STEPS), d.get("guidance", DEFAULT_EULER_GUIDANCE),
                                 d.get("shift", DEFAULT_SHIFT))
            if kind == "few_step":
                if "timesteps" not in d:
                    raise SamplerError('no timesteps; expected e.g. "timesteps": [1000, 750, 500, 250]')
                spec = cls.few_step(d["timesteps"], d.get("guidance", DEFAULT_FEW_STEP_GUIDANCE))
                if d.get("num_steps", spec.num_steps) != spec.num_steps:
                    raise SamplerError(f"num_steps={d['num_steps']} but {spec.num_steps} timesteps given")
                return spec
        except (SamplerError, TypeError) as e:
            raise SamplerError(f"{where}: {e}") from None
        raise SamplerError(f"{where}: unknown sampler {kind!r}; expected 'euler' or 'few_step'")

    def save(self, folder: str | Path) -> Path:
        """Write folder/sampler.json atomically."""
        return atomic_write_json(Path(folder) / FILE, self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> "SamplerSpec":
        """Read folder/sampler.json (one-line SamplerError if it is missing or bad)."""
        f = Path(folder) / FILE
        if not f.is_file():
            raise SamplerError(f"{folder} has no {FILE}")
        raw = read_json_object(f, SamplerError, f"rewrite it, e.g. {json.dumps(cls.euler().to_json())}, or delete it "
                               "to use the default Euler sampler")
        return cls.from_json(raw, str(f))


# ---- a model's own sampler, and explicit overrides of it --------------------------------------------
def model_folder(path: str | Path) -> Path | None:
    """The folder holding the model's config.json: `path` itself, a run folder's model/, or an
    exported pipeline's transformer/; None if there is none."""
    path = Path(path)
    for sub in MODEL_SUBFOLDERS:
        cand = path / sub if sub else path
        if (cand / "config.json").is_file():
            return cand
    return None


def model_shift(path: str | Path) -> float:
    """The shift the model was trained with (its fastlight.json), else DEFAULT_SHIFT."""
    meta_file = (model_folder(path) or Path(path)) / "fastlight.json"
    meta = read_json_object(meta_file, SamplerError, "re-save the model") if meta_file.is_file() else {}
    shift = meta.get("shift", DEFAULT_SHIFT)
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) or not math.isfinite(shift) or shift <= 0:
        raise SamplerError(f"{meta_file}: shift must be a finite number > 0, got {shift!r}; fix it or re-save the model")
    return float(shift)


def own_sampler(path: str | Path) -> tuple[SamplerSpec, str]:
    """The model's own sampler and where it came from: its sampler.json, or (none written, e.g. a
    Stage II or pruned model) the default Euler sampler with the model's shift from fastlight.json."""
    folder = model_folder(path) or Path(path)
    if (folder / FILE).is_file():
        return SamplerSpec.load(folder), f"from {folder / FILE}"
    return SamplerSpec.euler(shift=model_shift(folder)), f"the default: {folder} has no {FILE}"


def override(own: SamplerSpec, sampler: str | None = None, num_steps: int | None = None,
             guidance: float | None = None, shift: float | None = None,
             timesteps=None, default_shift: float = DEFAULT_SHIFT) -> SamplerSpec:
    """`own` with the given fields replaced. Fields not given keep `own`'s values while the kind
    stays, and take the kind's defaults when it changes (euler: 50 steps, guidance 4, `default_shift`
    (the model's); few_step: steps evenly spaced from 1000, 4 by default, guidance 1). `timesteps`
    implies few_step.

    A few-step student was trained for its timesteps: overriding any part of its sampler without
    naming the sampler (`sampler="few_step"` or `"euler"`) is refused with one line."""
    given = {k: v for k, v in dict(steps=num_steps, guidance=guidance, shift=shift, timesteps=timesteps).items()
             if v is not None}
    if sampler is None and not given:
        return own
    if own.kind == "few_step" and sampler is None:
        raise SamplerError(f"this model is a few-step student ({own.describe()}, from its sampler.json): its "
                           f"{' and '.join(given)} would change what it was trained for; drop that, or name the sampler "
                           "to override it explicitly (--sampler few_step|euler, or sampler= in a bench spec)")
    kind = (sampler or ("few_step" if timesteps is not None else own.kind)).lower().replace("-", "_")
    if kind not in KINDS:
        raise SamplerError(f"sampler must be euler or few_step, got {sampler!r}")
    same = kind == own.kind

    def pick(value, own_value, default):  # given > own (same kind) > the kind's default
        return value if value is not None else own_value if same else default

    if kind == "euler":
        if timesteps is not None:
            raise SamplerError("timesteps only apply to the few_step sampler (euler uses steps and shift)")
        return SamplerSpec.euler(pick(num_steps, own.num_steps, DEFAULT_EULER_STEPS),
                                 pick(guidance, own.guidance, DEFAULT_EULER_GUIDANCE), pick(shift, own.shift, default_shift))
    if shift is not None:
        raise SamplerError("shift only applies to the euler sampler (few_step uses timesteps)")
    if timesteps is not None and num_steps is not None and num_steps != len(timesteps):
        raise SamplerError(f"steps={num_steps} but {len(timesteps)} timesteps given")
    if timesteps is None and num_steps is not None:
        timesteps = even_timesteps(num_steps)
    return SamplerSpec.few_step(pick(timesteps, own.timesteps, DEFAULT_FEW_STEP_TIMESTEPS),
                                pick(guidance, own.guidance, DEFAULT_FEW_STEP_GUIDANCE))


class Choice(NamedTuple):
    """The sampler a verb uses and the one line it prints about it."""

    spec: SamplerSpec
    line: str


def choose_sampler(path: str | Path, given: SamplerSpec | None = None, **overrides) -> Choice:
    """The sampler to use for the model at `path`: `given` (chosen by a caller such as `fastlight
    run`), else the model's own (`own_sampler`) with the explicit `overrides` (`override`'s
    keywords; None values mean "not given")."""
    if given is not None:
        return Choice(given, f"sampler: {given.describe()} (set by the caller)")
    own, source = own_sampler(path)
    spec = override(own, **overrides, default_shift=model_shift(path))
    if spec == own:
        return Choice(own, f"sampler: {own.describe()} (the model's own, {source})")
    return Choice(spec, f"sampler: {spec.describe()} (explicit override; the model's own: {own.describe()})")
