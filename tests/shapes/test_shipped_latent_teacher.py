"""The shipped latent Shapes teacher (fastlight/assets/shapes_latent_teacher) and the `shapes-pipeline` preset
built from it: what its manifest claims, the folder the preset builds, and the demo recipe that uses it."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from fastlight.config import load_config
from fastlight.data.latents import pipeline_text_len
from fastlight.models import presets
from fastlight.models.load import resolve_model_path
from fastlight.run.pipeline import RunConfig, is_pipeline_teacher, resolve, stages
from fastlight.shapes.latent_data import folder_world
from fastlight.shapes.pipeline_folder import TEACHER_DIR, shapes_pipeline

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "shapes" / "pipeline.yaml"


def test_manifest_records_a_small_v2_teacher_trained_within_the_budget():
    man = json.loads((TEACHER_DIR / "manifest.json").read_text())
    size = sum(f.stat().st_size for f in TEACHER_DIR.iterdir())
    assert size <= 30 * 2**20 and man["bytes_on_disk"] <= 30 * 2**20  # issue 17: <= 30 MB
    assert man["world"]["world"] == "v2" and man["config"]["in_channels"] == 16
    assert 0 < man["train"]["wall_time_s"] <= 90 * 60  # <= 90 min of `fastlight pretrain` on this CPU
    weights = load_file(TEACHER_DIR / "diffusion_pytorch_model.safetensors")
    assert sum(t.numel() for t in weights.values()) == man["parameters"]
    # the guidance was chosen on validation cases and is reported on test cases (other clips)
    assert man["oracle_validation"]["split"] == "validation" and man["oracle_test"]["split"] == "test"
    assert man["oracle_test"]["guidance"] == man["sampler"]["guidance"] == man["oracle_validation"]["guidance"]
    assert man["data"]["split"] == "train" and man["data"]["stream"] == "shapes/train"


def test_the_preset_is_a_v2_pipeline_folder_with_the_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path))
    folder = resolve_model_path("shapes-pipeline")
    assert folder == shapes_pipeline() and folder.parent == tmp_path / "shapes_pipelines"
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert shapes_pipeline() == folder and (folder / "model_index.json").stat().st_mtime_ns == stamp  # built once
    assert folder_world(folder, 9).name == "v2" and pipeline_text_len(folder) == 24
    assert is_pipeline_teacher(RunConfig(teacher="shapes-pipeline"))
    shipped = load_file(TEACHER_DIR / "diffusion_pytorch_model.safetensors")
    built = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    assert shipped.keys() == built.keys() and all(torch.equal(shipped[k].float(), built[k].float()) for k in shipped)


def test_the_demo_recipe_takes_the_real_pipeline_path(monkeypatch, tmp_path):
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path))
    monkeypatch.chdir(ROOT)
    first = RECIPE.read_text().splitlines()[0]
    assert "--pipeline shapes-pipeline" in first and first.endswith("fastlight run configs/shapes/pipeline.yaml")
    cfg = resolve(load_config(RunConfig, RECIPE, []))
    assert cfg.teacher == "shapes-pipeline" and cfg.method == "fastlightgen" and cfg.decoder["student"] == "fast"
    assert (cfg.eval["num_frames"], cfg.eval["height"], cfg.eval["width"]) == (9, 64, 64)
    names = [s.name for s in stages(cfg)]
    assert names == ["1_analyze", "2_plan", "3_stage2", "4_stage3", "5_decoder", "export", "evaluate", "bench",
                     "report"]
