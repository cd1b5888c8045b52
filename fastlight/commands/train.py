"""`fastlight train --recipe NAME` (Stage II) and `fastlight distill --recipe NAME` (Stage III)."""
from __future__ import annotations

from fastlight.commands.options import config_and_overrides
from fastlight.errors import InputError


def add_parser(sub) -> None:
    s = sub.add_parser("train", help="Stage II training with a recipe (dpp), resumable")
    s.add_argument("--recipe", required=True, help="dpp")
    s.add_argument("config", nargs="?", default=None, help="YAML recipe, e.g. configs/shapes/dpp.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=run)

    s = sub.add_parser("distill", help="Stage III: DMD to a few-step generator (fastlightgen | dmd2), resumable")
    s.add_argument("--recipe", required=True, help="fastlightgen (well-guided teacher, pruned) or dmd2 (step-only)")
    s.add_argument("config", nargs="?", default=None, help="YAML recipe, e.g. configs/shapes/distill.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=run_distill)


def run(a) -> None:
    from fastlight.train.entry import train_from_config

    out = train_from_config(a.recipe, *config_and_overrides(a))
    print(f"trained model written to {out}")


def run_distill(a) -> None:
    from fastlight.train.entry import train_from_config

    if a.recipe not in ("fastlightgen", "dmd2"):
        raise InputError(f"unknown distill recipe {a.recipe!r}: use fastlightgen (well-guided, pruned) or dmd2 "
                         "(step-only); Stage II recipes run with `fastlight train`")
    out = train_from_config(a.recipe, *config_and_overrides(a))
    print(f"few-step generator written to {out} (sample it with `fastlight evaluate {out} --sampler few_step`)")
