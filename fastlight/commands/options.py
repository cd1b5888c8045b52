"""Arguments and argument parsing that several verbs share.

The argparse types below (`finite_float`, `whole_number`, `int_list`, `output_folder`, ...) refuse a bad value while
the command line is parsed, so the message names the option ("argument --steps: ...") and what to
give; `OneLineParser` turns such an error into a UsageError, which `fastlight` prints as one line
(no usage block) with exit code 2, the same contract as any FastlightError.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from fastlight.errors import InputError, PathError, UsageError, check_dir_creatable


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise a UsageError, 'fastlight VERB: error: argument --x: ...; see
    fastlight VERB --help' (argparse's own prints the usage block and exits)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {' '.join(message.split())}; see {self.prog} --help")


def finite_float(text: str) -> float:
    """A finite number (nan and inf are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give e.g. 4.0") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give e.g. 4.0")
    return v


def whole_number(text: str, example: str = "8") -> int:
    """A whole number (its range is the verb's to check)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give e.g. {example}") from None


def output_folder(text: str) -> str:
    """An output folder path that can be created (or is a folder): checked while parsing, before any
    work, creating nothing. Whether an existing folder may be replaced is the verb's to say."""
    try:
        check_dir_creatable(text, "folder")
    except PathError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def output_file(text: str) -> str:
    """An output file path whose folder can be created and that is not itself a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file path, e.g. {Path(text) / 'out.json'}")
    try:
        check_dir_creatable(Path(text).parent, "folder")
    except PathError as e:
        raise argparse.ArgumentTypeError(f"file {text}: {e}") from None
    return text


def int_list(text: str) -> list[int]:
    """'4,5' -> [4, 5] (empty items ignored; '' -> [])."""
    try:
        return [int(i) for i in text.split(",") if i.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated whole numbers, e.g. 4,5") from None


def positive_int_list(text: str) -> list[int]:
    """'2,4,8' -> [2, 4, 8], each >= 1, at least one."""
    out = int_list(text)
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated whole numbers >= 1, e.g. 2,4,8")
    return out


def float_list(text: str) -> list[float]:
    """'0,0.1,0.2' -> [0.0, 0.1, 0.2], each finite, at least one."""
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        out = []
    if not out or not all(math.isfinite(v) for v in out):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated finite numbers, e.g. 0,0.1,0.2")
    return out


def add_sampler_args(s) -> None:
    """The explicit override of a model's own sampler (sampler.json); nothing given = the model's own."""
    s.add_argument("--sampler", default=None, choices=["euler", "few_step"],
                   help="override the model's own sampler (needed to override a few-step student's)")
    s.add_argument("--steps", type=whole_number, default=None, help="sampling steps (default: the model's own)")
    s.add_argument("--guidance", "--cfg", dest="guidance", type=finite_float, default=None,
                   help="w in v_uncond + w (v_cond - v_uncond); 1 = no guidance (default: the model's own)")
    s.add_argument("--shift", type=finite_float, default=None, help="Euler grid shift (default: the model's own)")
    s.add_argument("--timesteps", default=None, help="few-step timesteps, e.g. 1000,750,500,250 (implies few_step)")


def sampler_overrides(a) -> dict:
    """The sampler arguments -> the overrides dict of `SamplerSpec` (None = the model's own)."""
    timesteps = None
    if a.timesteps is not None:
        try:
            timesteps = tuple(float(t) for t in a.timesteps.split(",") if t.strip())
        except ValueError:
            timesteps = ()
        if not timesteps or not all(math.isfinite(t) for t in timesteps):
            raise InputError(f"--timesteps {a.timesteps!r}: give comma-separated finite numbers, e.g. 1000,750,500,250")
    return {"sampler": a.sampler, "num_steps": a.steps, "guidance": a.guidance, "shift": a.shift, "timesteps": timesteps}


def config_and_overrides(a) -> tuple[str | None, list[str]]:
    """`verb [config.yaml] [key=value ...]`: a first positional that is key=value is an override."""
    if a.config is not None and "=" in a.config and not a.config.endswith((".yaml", ".yml")):
        return None, [a.config, *a.overrides]
    return a.config, list(a.overrides)


def block_ids(text) -> tuple[int, ...]:
    """`--skip 4,5` -> (4, 5); a list already parsed by `int_list` passes through as a tuple."""
    if isinstance(text, (list, tuple)):
        return tuple(text)
    try:
        return tuple(int(i) for i in text.split(",") if i.strip()) if text else ()
    except ValueError:
        raise InputError(f"--skip {text!r}: give comma-separated block ids, e.g. 4,5") from None
