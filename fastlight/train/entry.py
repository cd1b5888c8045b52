"""A recipe by name: its typed config (YAML + key=value overrides) -> the recipe, its hooks -> the one loop.
The components of `fastlight train`, `distill` and `pretrain` (the verbs: fastlight/commands/train.py, pretrain.py)."""
from __future__ import annotations

from pathlib import Path

from fastlight.errors import ConfigError, InputError
from fastlight.plugins import component


def build_hooks(specs) -> list:
    """A config's `hooks: [{_component_: NAME, ...}]` -> the loop's logging hooks (entry point group
    `fastlight.hooks`, or `package.module:Class`)."""
    hooks = []
    for spec in specs or []:
        spec = {"_component_": spec} if isinstance(spec, str) else dict(spec)
        if "_component_" not in spec:
            raise ConfigError(f"a hook must name its component, e.g. hooks: [{{_component_: shapes-probe}}]; got {spec!r}")
        cls = component("fastlight.hooks", spec.pop("_component_"))
        try:
            hooks.append(cls(**spec))
        except TypeError as e:
            raise ConfigError(f"hook {cls.__name__}: {e}") from None
    return hooks


def train_from_config(recipe: str, config_path: str | None = None, overrides: list[str] | None = None,
                      progress: bool = True) -> Path:
    """Load the recipe's typed config (YAML + overrides), build the recipe, train; returns out/model."""
    from fastlight.config import load_config

    RECIPES = available_recipes()
    if recipe not in RECIPES:
        raise InputError(f"unknown recipe {recipe!r}; available recipes: {', '.join(sorted(RECIPES))}")
    config_cls, _ = RECIPES[recipe]
    cfg = load_config(config_cls, config_path, overrides or [])
    return run_recipe(recipe, cfg, progress)


def run_recipe(recipe: str, cfg, progress: bool = True) -> Path:
    """Build recipe `recipe` from its typed config and train it on the loop, with the config's hooks."""
    from fastlight.train.loop import train

    _, recipe_cls = available_recipes()[recipe]
    hooks = build_hooks(getattr(cfg, "hooks", []))
    return train(recipe_cls(cfg), cfg, progress=progress, hooks=hooks)


def available_recipes() -> dict:
    """name -> (config class, recipe class): pretrain (flow matching from random weights), dpp (FastLightGen
    Stage II), icmd (VDMini), align (Lightning Video), fastlightgen (Stage III: DMD with the well-guided
    teacher), dmd2 (step-only baseline)."""
    from fastlight.distill.dmd import DMD2, FASTLIGHTGEN
    from fastlight.train.align import ALIGN
    from fastlight.train.icmd import ICMD
    from fastlight.train.pretrain import PRETRAIN
    from fastlight.train.recipes import RECIPES

    return {"pretrain": PRETRAIN, **RECIPES, "icmd": ICMD, "align": ALIGN, "fastlightgen": FASTLIGHTGEN, "dmd2": DMD2}
