"""The per-GPU memory plan (fastlight/run/memory.py) and `fastlight run CONFIG --dry-run`."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fastlight.cli import main
from fastlight.errors import ConfigError, ModelError
from fastlight.models.hunyuan import tiny_hunyuan_config
from fastlight.models.wan import tiny_wan_config
from fastlight.run.memory import (GIB, Geometry, PlanOptions, count_parameters, geometry, memory_plan,
                                  video_tokens)
from tests.benchmark_scripts import load_benchmark

WAN = {"_class_name": "WanTransformer3DModel", **tiny_wan_config()}
HUNYUAN = {"_class_name": "HunyuanVideoTransformer3DModel", **tiny_hunyuan_config()}
TINY = Geometry("tiny-wan", WAN, (4, 8, 8))
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "shapes" / "fastlightgen.yaml"
OPTS = PlanOptions(num_gpus=1, frames=9, height=64, width=64)


@pytest.mark.parametrize("config", [WAN, HUNYUAN], ids=["wan", "hunyuan"])
def test_meta_count_equals_the_real_model(config):
    import diffusers

    torch.manual_seed(0)
    real = getattr(diffusers, config["_class_name"]).from_config({k: v for k, v in config.items() if k != "_class_name"})
    counts = count_parameters(config)
    assert counts.total == sum(p.numel() for p in real.parameters())
    assert len(counts.blocks) > 0 and sum(counts.blocks) < counts.total


def test_wan_1_3b_count_is_exact_and_sane():
    counts = count_parameters(geometry("wan2.1-t2v-1.3b").config)
    # "1.3B" is the model's name; its bf16 safetensors (2.84 GB) hold 1.42 B parameters, as counted here
    assert counts.total == 1_418_996_800
    assert 1.3e9 <= counts.total <= 1.5e9
    assert len(counts.blocks) == 30 and len(set(counts.blocks)) == 1


def test_tokens_follow_vae_and_patch():
    assert video_tokens(geometry("wan2.1-t2v-1.3b"), 81, 480, 832) == 21 * 30 * 52
    assert video_tokens(geometry("wan2.2-ti2v-5b"), 81, 480, 832) == 21 * 15 * 26


def test_sharding_divides_by_num_gpus():
    one = memory_plan(TINY, ["stage2", "stage3"], OPTS)
    eight = memory_plan(TINY, ["stage2", "stage3"], replace(OPTS, num_gpus=8))
    for a, b in zip(one.rows, eight.rows):
        assert b.grads_gib == pytest.approx(a.grads_gib / 8)
        assert b.optimizer_gib == pytest.approx(a.optimizer_gib / 8)
        assert b.activations_gib == pytest.approx(a.activations_gib)  # data parallel: each GPU its own samples
    counts = count_parameters(WAN)
    # the weights: the shards plus two all-gathered blocks
    assert eight.rows[0].weights_gib * GIB == pytest.approx(2 * counts.total / 8 + 2 * 2 * max(counts.blocks))


def test_bf16_conventions_and_frozen_real_score():
    counts = count_parameters(WAN)
    n = counts.total
    s2 = memory_plan(TINY, ["stage2"], replace(OPTS, ema=False)).rows[0]
    assert (s2.weights_gib * GIB, s2.grads_gib * GIB, s2.optimizer_gib * GIB) == (2 * n, 2 * n, 12 * n)
    fp32 = memory_plan(TINY, ["stage2"], replace(OPTS, ema=False, mixed_precision="no")).rows[0]
    assert (fp32.weights_gib * GIB, fp32.grads_gib * GIB, fp32.optimizer_gib * GIB) == (4 * n, 4 * n, 8 * n)
    # dmd2: generator + critic trained (grads, AdamW), the real score frozen: weights only
    s3 = memory_plan(TINY, ["stage3"], replace(OPTS, ema=False, method="dmd2")).rows[0]
    assert s3.weights_gib * GIB == 3 * 2 * n
    assert s3.grads_gib * GIB == 2 * 2 * n and s3.optimizer_gib * GIB == 2 * 12 * n
    frozen = memory_plan(TINY, ["analyze"], OPTS).rows[0]
    assert frozen.grads_gib == 0 and frozen.optimizer_gib == 0 and frozen.weights_gib * GIB == 2 * n


def test_fastlightgen_stage3_trains_the_pruned_model():
    counts = count_parameters(WAN)
    s3 = memory_plan(TINY, ["stage3"], replace(OPTS, ema=False, prune_ratio=0.3)).rows[0]
    left = counts.pruned(0.3)
    assert left < counts.total and (counts.total - left) >= 0.3 * counts.total
    assert s3.grads_gib * GIB == 2 * 2 * left


def test_offload_moves_bytes_to_host():
    base = memory_plan(TINY, ["stage3"], OPTS).rows[0]
    opt = memory_plan(TINY, ["stage3"], replace(OPTS, offload_optimizer=True)).rows[0]
    both = memory_plan(TINY, ["stage3"], replace(OPTS, offload_optimizer=True, offload_params=True)).rows[0]
    assert opt.optimizer_gib == 0 and opt.host_gib == pytest.approx(base.optimizer_gib)
    assert both.grads_gib == 0 and both.total_gib < opt.total_gib < base.total_gib
    assert both.host_gib == pytest.approx(base.total_gib - base.activations_gib)  # one GPU: nothing gathered


def test_checkpointing_lowers_activations_and_fit_is_judged():
    geo = geometry("wan2.1-t2v-14b")
    on = memory_plan(geo, ["stage2"], PlanOptions(gradient_checkpointing=True)).rows[0]
    off = memory_plan(geo, ["stage2"], PlanOptions(gradient_checkpointing=False)).rows[0]
    assert on.activations_gib < off.activations_gib / 3
    assert not off.fits and off.total_gib > 80
    small = memory_plan(geometry("wan2.1-t2v-1.3b"), ["stage2"], PlanOptions()).rows[0]
    assert small.fits and small.total_gib < 80


def test_bad_inputs(tmp_path):
    with pytest.raises(ModelError, match="geometry preset"):
        geometry(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ModelError, match="UNet2DModel"):
        geometry(tmp_path)
    with pytest.raises(ConfigError, match="num_gpus"):
        memory_plan(TINY, ["stage2"], replace(OPTS, num_gpus=0))
    with pytest.raises(ConfigError, match="unknown stage"):
        memory_plan(TINY, ["stage9"], OPTS)


def test_dry_run_prints_stages_and_table_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(RECIPE), "--dry-run", f"out={out}"]) == 0
    text = capsys.readouterr().out
    for stage in ("1_analyze", "3_stage2", "4_stage3", "report"):
        assert stage in text
    assert "weights" in text and "optimizer" in text and "activ." in text
    rows = [line.split()[0] for line in text.splitlines() if line.split()[:1] in (["analyze"], ["stage2"], ["stage3"])]
    assert rows == ["analyze", "stage2", "stage3"]
    assert not out.exists()


def test_dry_run_on_a_geometry_preset(tmp_path, capsys):
    assert main(["run", str(RECIPE), "--num-gpus", "8", "--offload", "both", "--dry-run",
                 "teacher=wan2.1-t2v-1.3b", "stage2.mixed_precision=bf16", "stage2.gradient_checkpointing=true",
                 f"out={tmp_path / 'run'}"]) == 0
    text = capsys.readouterr().out
    stage2 = next(line.split() for line in text.splitlines() if line.startswith("stage2"))
    stage3 = next(line.split() for line in text.splitlines() if line.startswith("stage3"))
    assert stage2[1:4] == ["bf16", "on", "2"]  # the stage's own recipe config: 16 samples over 8 GPUs
    assert stage3[1:3] == ["no", "off"]
    assert "1,418,996,800 parameters" in text and "32760 tokens" in text and "params+optimizer" in text
    assert not (tmp_path / "run").exists()


def test_readme_table_is_the_benchmark_output():
    bench = load_benchmark("memory_plan")
    table = bench.table(8, 80.0, (81, 480, 832))
    assert len(table.splitlines()) == 2 + 4 * 2 * 2
    assert table in (RECIPE.parents[2] / "README.md").read_text()  # regenerate with `python benchmarks/memory_plan.py`


def test_dry_run_refuses_bad_machine_flags(capsys):
    assert main(["run", str(RECIPE), "--num-gpus", "0", "--dry-run"]) == 2
    assert main(["run", str(RECIPE), "--shape", "81,480", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--num-gpus must be >= 1" in err and "FRAMES,HEIGHT,WIDTH" in err
