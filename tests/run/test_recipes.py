"""Every shipped run recipe resolves (both presets), names its command first, and builds valid stage configs."""
from pathlib import Path

import pytest

from fastlight.config import load_config
from fastlight.run.pipeline import Run, RunConfig, check_stage_configs, resolve, stages

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "shapes").glob("*.yaml"))
RUN_RECIPES = [p for p in RECIPES if p.stem in ("fastlightgen", "vdmini", "lightning", "dmd2", "prune_only")]


def test_all_run_recipes_present():
    assert sorted(p.stem for p in RUN_RECIPES) == ["dmd2", "fastlightgen", "lightning", "prune_only", "vdmini"]


@pytest.mark.parametrize("path", RUN_RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("preset", ["quick", "full"])
def test_run_recipe_resolves(path, preset):
    assert path.read_text().startswith(f"# fastlight run configs/shapes/{path.name}")
    cfg = resolve(load_config(RunConfig, path, [f"preset={preset}"]))
    assert cfg.method == path.stem
    names = [s.name for s in stages(cfg)]
    check_stage_configs(Run(cfg), names)
    assert names[-3:] == ["evaluate", "bench", "report"]
