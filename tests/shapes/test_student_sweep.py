"""benchmarks/student_sweep.py: run-recipe variants trained through Stage III and judged on VALIDATION cases."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import fastlight.shapes.text_model  # noqa: F401 - diffusers takes the phrase encoder's module from sys.modules
from fastlight.errors import ConfigError
from fastlight.shapes import world as shapes
from fastlight.shapes.latent_data import write_shapes_shards
from fastlight.shapes.pipeline_folder import latent_transformer, write_shapes_pipeline
from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
WAN22 = ROOT / "configs" / "wan" / "wan22_ti2v_5b.yaml"


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("student_sweep")


def test_a_variant_is_a_name_and_overrides(sweep):
    assert sweep.parse_variant("base") == ("base", [])
    assert sweep.parse_variant("r29:prune_ratio=0.29,stage2.lr=1e-3") == ("r29", ["prune_ratio=0.29", "stage2.lr=1e-3"])
    for bad in ("", ":a=1", "x:lr", "a/b:x=1"):
        with pytest.raises(ConfigError, match="--variant"):
            sweep.parse_variant(bad)


@pytest.mark.slow
def test_two_variants_on_a_tiny_pipeline(sweep, tmp_path, monkeypatch):
    world = shapes.world_from_name("v2", num_frames=9)
    pipe = write_shapes_pipeline(tmp_path / "pipe", transformer=latent_transformer(0, num_layers=4), world="v2")
    shards = tmp_path / "shards"
    write_shapes_shards(shards, pipe, 8, world=world, shard_size=8, batch_size=4, progress=False)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "sweep"
    common = ["preset=tiny", f"teacher={pipe}", f"data={shards}", "synthesize={}", "decoder=none"]
    sweep.main([str(WAN22), *[f"--set={c}" for c in common], "--variant", "base",
                "--variant", "two:prune_ratio=0.4", "--cases", "3", "--out", str(out)])
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["split"] == "validation" and list(doc["variants"]) == ["base", "two"]
    base, two = doc["variants"]["base"], doc["variants"]["two"]  # the tiny preset removes >= 20%: one block
    assert two["overrides"] == ["prune_ratio=0.4"] and two["removed_fraction"] >= 0.4 > base["removed_fraction"]
    for v in (base, two):
        assert v["student"]["split"] == "validation" and v["student"]["num_cases"] == 3
        iv = v["student"]["interval"]
        assert iv["low"] <= v["student"]["score"] <= iv["high"]
        d = v["student_minus_teacher"]
        assert d["estimate"] == pytest.approx(v["student"]["score"] - v["teacher"]["score"])
    assert base["teacher"]["score"] == two["teacher"]["score"]  # the same cases and noise for every variant
