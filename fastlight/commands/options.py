"""Arguments and argument parsing that several verbs share."""
from __future__ import annotations

from fastlight.errors import InputError


def add_sampler_args(s) -> None:
    """The explicit override of a model's own sampler (sampler.json); nothing given = the model's own."""
    s.add_argument("--sampler", default=None, choices=["euler", "few_step"],
                   help="override the model's own sampler (needed to override a few-step student's)")
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    s.add_argument("--guidance", "--cfg", dest="guidance", type=float, default=None,
                   help="w in v_uncond + w (v_cond - v_uncond); 1 = no guidance (default: the model's own)")
    s.add_argument("--shift", type=float, default=None, help="Euler grid shift (default: the model's own)")
    s.add_argument("--timesteps", default=None, help="few-step timesteps, e.g. 1000,750,500,250 (implies few_step)")


def sampler_overrides(a) -> dict:
    """The sampler arguments -> the overrides dict of `SamplerSpec` (None = the model's own)."""
    timesteps = None
    if a.timesteps is not None:
        try:
            timesteps = tuple(float(t) for t in a.timesteps.split(",") if t.strip())
        except ValueError:
            raise InputError(f"--timesteps {a.timesteps!r}: give comma-separated numbers, e.g. 1000,750,500,250") from None
    return {"sampler": a.sampler, "num_steps": a.steps, "guidance": a.guidance, "shift": a.shift, "timesteps": timesteps}


def config_and_overrides(a) -> tuple[str | None, list[str]]:
    """`verb [config.yaml] [key=value ...]`: a first positional that is key=value is an override."""
    if a.config is not None and "=" in a.config and not a.config.endswith((".yaml", ".yml")):
        return None, [a.config, *a.overrides]
    return a.config, list(a.overrides)


def block_ids(text: str) -> tuple[int, ...]:
    """`--skip 4,5` -> (4, 5)."""
    try:
        return tuple(int(i) for i in text.split(",") if i.strip()) if text else ()
    except ValueError:
        raise InputError(f"--skip {text!r}: give comma-separated block ids, e.g. 4,5") from None
