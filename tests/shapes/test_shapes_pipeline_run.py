"""The Shapes pipeline folder through the real-model code path: `fastlight run configs/wan/wan22_ti2v_5b.yaml
preset=tiny teacher=FOLDER data=SHARDS` (the recipe real Wan 2.2 TI2V users run) on a random-weight Shapes
pipeline and its train-stream latent shards, analyze -> plan -> Stage II -> Stage III -> export, evaluate and
bench; the export loads in the stock WanPipeline and generates a 64 x 64 video."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import fastlight.shapes.text_model  # noqa: F401 - diffusers takes the phrase encoder's module from sys.modules
from fastlight.cli import main
from fastlight.data.latents import pipeline_text_len
from fastlight.shapes import world as shapes
from fastlight.shapes.latent_data import clip_at, default_world, write_shapes_shards
from fastlight.shapes.pipeline_folder import latent_transformer, write_shapes_pipeline

ROOT = Path(__file__).resolve().parents[2]
WAN22 = ROOT / "configs" / "wan" / "wan22_ti2v_5b.yaml"
THROUGH_EXPORT = "1_analyze,2_plan,3_stage2,4_stage3,5_decoder,export"


def _eval_inputs(folder: Path, n: int = 2) -> tuple[Path, Path]:
    """n Shapes prompts (from the calibration stream: not the shards' train clips) and their first frames."""
    world = default_world(9)
    clips = [clip_at(0, "calibration", k, world) for k in range(n)]
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(c.prompt for c in clips) + "\n")
    frames = folder / "frames"
    frames.mkdir()
    for i, c in enumerate(clips):
        first = shapes.render(c, world)[:, 0]  # (3, H, W) in [-1, 1]
        pixels = ((first.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        Image.fromarray(pixels).save(frames / f"{i}.png")
    return prompts, frames


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapes_run")
    pipe = write_shapes_pipeline(base / "pipe", transformer=latent_transformer(0, num_layers=4))
    shards = base / "shards"
    write_shapes_shards(shards, pipe, 8, shard_size=8, batch_size=4, progress=False)
    prompts, frames = _eval_inputs(base)
    out = base / "run"
    args = ["run", str(WAN22), "preset=tiny", f"teacher={pipe}", f"data={shards}", "synthesize={}", f"out={out}",
            f"eval.prompts={prompts}", f"eval.images={frames}", "eval_cases=3"]  # the oracle's cases (bench: the prompts)
    return pipe, out, args


def test_shapes_pipeline_runs_the_real_path_through_export(shapes_run, monkeypatch):
    from diffusers import WanPipeline

    pipe, out, args = shapes_run
    monkeypatch.chdir(ROOT)
    assert main([*args, "--only", THROUGH_EXPORT]) == 0
    done = sorted(d.name for d in out.iterdir() if (d / ".done.json").exists())
    assert done == sorted(THROUGH_EXPORT.split(","))
    plan = json.loads((out / "2_plan" / ".done.json").read_text())["summary"]
    assert plan["drop_blocks"]
    export = out / "export" / "pipeline"
    index = json.loads((export / "model_index.json").read_text())
    assert index["expand_timesteps"] is True
    assert json.loads((export / "transformer" / "config.json").read_text())["num_layers"] < 4
    stock = WanPipeline.from_pretrained(str(export))
    call = json.loads((export / "fastlight_export.json").read_text())["call"]
    # the teacher's text length travels with the linked tokenizer/ and is part of how to call the export
    assert pipeline_text_len(export) == pipeline_text_len(pipe) == 16 == call["max_sequence_length"]
    video = stock("a red circle moving left quickly", num_inference_steps=call["num_inference_steps"],
                  guidance_scale=call["guidance_scale"], max_sequence_length=call["max_sequence_length"], num_frames=9,
                  height=64, width=64, output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert np.asarray(video).shape == (1, 9, 64, 64, 3) and np.isfinite(video).all()
    light = json.loads((out / "export" / "pipeline_light" / "vae" / "config.json").read_text())
    assert light["decoder_base_dim"] < json.loads((pipe / "vae" / "config.json").read_text())["base_dim"]  # the Shapes VAE pruned


@pytest.mark.slow
def test_shapes_pipeline_runs_evaluate_bench_and_report(shapes_run, monkeypatch):
    """The rest of the run: evaluate (teacher and student through the Shapes VAE), bench (the stock pipelines)
    and the report, on the same run folder."""
    pipe, out, args = shapes_run
    monkeypatch.chdir(ROOT)
    if not (out / "export" / ".done.json").exists():
        assert main([*args, "--only", THROUGH_EXPORT]) == 0
    assert main(args) == 0
    ev = json.loads((out / "evaluate" / "eval.json").read_text())
    assert np.isfinite(ev["pairs"]["student"]["motion_ratio"]["estimate"])
    # the Shapes oracle judged every row on 3 TEST cases of the folder's world (v1 rules at 64 px)
    assert ev["num_prompts"] == 3 and ev["oracle"]["name"] == "ShapesBench" and ev["oracle"]["oracle"] == "check_clip"
    assert sorted(ev["oracle"]["models"]) == ["student", "student_light", "teacher"]
    summary = json.loads((out / "evaluate" / ".done.json").read_text())["summary"]["oracle"]
    assert all(r["interval"]["low"] <= r["score"] <= r["interval"]["high"] for r in summary["rows"].values())
    assert set(summary["differences"]) == {"student", "student_light"}
    assert "## ShapesBench (3 test cases" in (out / "report" / "report.md").read_text()
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    assert len(rows) == 3 and all(r["denoise_s"] > 0 for r in rows)  # teacher, student, student + light decoder
    assert [r["max_sequence_length"] for r in rows] == [16, 16, 16]  # each folder's own text length, passed
    assert rows[2]["decoder_params"] < rows[1]["decoder_params"] == rows[0]["decoder_params"]


@pytest.mark.slow
def test_the_evaluate_verb_gives_the_run_stage_scores(shapes_run, monkeypatch, tmp_path):
    """`fastlight evaluate STUDENT --pipeline SHAPES_PIPE` (no prompts: the oracle's cases) with the run's samplers
    and seed scores the teacher and the student exactly as the run's evaluate stage did."""
    pipe, out, args = shapes_run
    monkeypatch.chdir(ROOT)
    if not (out / "evaluate" / ".done.json").exists():
        assert main(args) == 0
    stage = json.loads((out / "evaluate" / "eval.json").read_text())["oracle"]["models"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())  # the resolved run config
    steps, guidance = cfg["teacher_steps"], cfg["cfg_scale"]
    assert main(["evaluate", str(out / "4_stage3" / "model"), "--pipeline", str(pipe), "--num-cases", "3",
                 "--num-frames", "9", "--height", "64", "--width", "64", "--reference-steps", str(steps),
                 "--reference-guidance", str(guidance), "--seed", "0", "--no-videos", "--out", str(tmp_path / "ev")]) == 0
    verb = json.loads((tmp_path / "ev" / "eval.json").read_text())["oracle"]["models"]
    assert verb["teacher"]["score"] == stage["teacher"]["score"]
    assert verb["model"]["score"] == stage["student"]["score"]
    assert verb["model"]["per_case"] == stage["student"]["per_case"]
