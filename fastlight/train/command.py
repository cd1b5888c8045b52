"""`fastlight train --recipe NAME config.yaml key=value ...`: config -> recipe -> the one loop."""
from __future__ import annotations

from pathlib import Path


def train_command(recipe: str, config_path: str | None = None, overrides: list[str] | None = None,
                  progress: bool = True) -> Path:
    """Load the recipe's typed config (YAML + overrides), build the recipe, train; returns out/model."""
    from fastlight.config import load_config
    from fastlight.train.loop import train

    RECIPES = available_recipes()
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; available recipes: {', '.join(sorted(RECIPES))}")
    config_cls, recipe_cls = RECIPES[recipe]
    cfg = load_config(config_cls, config_path, overrides or [])
    return train(recipe_cls(cfg), cfg, progress=progress)


def available_recipes() -> dict:
    """name -> (config class, recipe class): dpp (FastLightGen Stage II), icmd (VDMini), align (Lightning
    Video), fastlightgen (Stage III: DMD with the well-guided teacher), dmd2 (step-only baseline)."""
    from fastlight.distill.dmd import DMD2, FASTLIGHTGEN
    from fastlight.train.align import ALIGN
    from fastlight.train.icmd import ICMD
    from fastlight.train.recipes import RECIPES

    return {**RECIPES, "icmd": ICMD, "align": ALIGN, "fastlightgen": FASTLIGHTGEN, "dmd2": DMD2}
