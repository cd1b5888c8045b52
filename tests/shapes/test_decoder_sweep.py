"""benchmarks/decoder_sweep.py: light-decoder variants of a finished run, judged on VALIDATION cases."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import fastlight.shapes.text_model  # noqa: F401 - diffusers takes the phrase encoder's module from sys.modules
from fastlight.cli import main
from fastlight.errors import ConfigError, MissingFileError
from fastlight.shapes import world as shapes
from fastlight.shapes.latent_data import write_shapes_shards
from fastlight.shapes.pipeline_folder import latent_transformer, write_shapes_pipeline
from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
WAN22 = ROOT / "configs" / "wan" / "wan22_ti2v_5b.yaml"


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("decoder_sweep")


def test_a_variant_is_a_name_and_yaml_values(sweep):
    assert sweep.parse_variant("base") == ("base", {})
    assert sweep.parse_variant("w24:fast_width=24,lr=3e-3,cache_targets=true") == (
        "w24", {"fast_width": 24, "lr": 3e-3, "cache_targets": True})
    for bad in ("", ":a=1", "x:lr", "a/b:x=1", "student:steps=2", "teacher"):
        with pytest.raises(ConfigError, match="--variant"):
            sweep.parse_variant(bad)


def test_a_folder_that_is_not_a_run_is_refused_in_one_line(sweep, tmp_path):
    with pytest.raises(MissingFileError, match="no config.yaml"):
        sweep.load_run(tmp_path)


@pytest.mark.slow
def test_two_decoder_variants_of_a_tiny_run(sweep, tmp_path, monkeypatch):
    world = shapes.world_from_name("v2", num_frames=9)
    pipe = write_shapes_pipeline(tmp_path / "pipe", transformer=latent_transformer(0, num_layers=4), world="v2")
    shards = tmp_path / "shards"
    write_shapes_shards(shards, pipe, 8, world=world, shard_size=8, batch_size=4, progress=False)
    monkeypatch.chdir(ROOT)
    run = tmp_path / "run"
    fast = ["decoder.student=fast", "decoder.fast_width=2", "decoder.steps=2", "decoder.pool_size=4",
            "decoder.cache_targets=true"]
    assert main(["run", str(WAN22), "preset=tiny", f"teacher={pipe}", f"data={shards}", "synthesize={}", f"out={run}",
                 *fast, "--only", "1_analyze,2_plan,3_stage2,4_stage3"]) == 0
    out = tmp_path / "sweep"
    sweep.main([str(run), "--variant", "base", "--variant", "wide:fast_width=4,steps=3", "--cases", "3",
                "--threads", "2", "--time-repeats", "1", "--out", str(out)])
    doc = json.loads((out / "decoder_sweep.json").read_text())
    assert doc["split"] == "validation" and doc["cases"] == 3 and list(doc["variants"]) == ["base", "wide"]
    base, wide = doc["variants"]["base"], doc["variants"]["wide"]
    assert json.loads((out / "wide" / "distill" / "model" / "config.json").read_text())["width"] == 4
    assert json.loads((out / "base" / "distill" / "model" / "config.json").read_text())["width"] == 2  # the run's
    full = doc["full_decoder"]
    for v in (base, wide):
        assert v["interval"]["low"] <= v["score"] <= v["interval"]["high"]
        assert v["minus_full_decoder"]["estimate"] == pytest.approx(v["score"] - full["score"])
        assert v["decode_s"] > 0 and v["psnr_vs_full_db"]["estimate"] < 60  # an untrained decoder differs
    assert wide["overrides"] == {"fast_width": 4, "steps": 3} and base["overrides"] == {}
    assert doc["first_variant"] == "base" and "minus_first_variant" not in base  # variants compared paired
    assert wide["minus_first_variant"]["estimate"] == pytest.approx(wide["score"] - base["score"])
    assert wide["minus_first_variant"]["low"] <= wide["minus_first_variant"]["estimate"] <= \
        wide["minus_first_variant"]["high"]
    # a second call reuses the finished variants (no new checkpoints) and scores the same cases again
    before = sorted(p.name for p in (out / "wide" / "distill").iterdir())
    sweep.main([str(run), "--variant", "wide:fast_width=4,steps=3", "--cases", "3", "--threads", "2",
                "--time-repeats", "1", "--out", str(out)])
    assert sorted(p.name for p in (out / "wide" / "distill").iterdir()) == before
    again = json.loads((out / "decoder_sweep.json").read_text())["variants"]["wide"]
    assert again["score"] == pytest.approx(wide["score"])
