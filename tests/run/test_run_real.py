"""`fastlight run` on real diffusers pipelines: the recipes' `tiny` presets through export, on the tiny pipelines.

Wan 2.1 T2V and Wan 2.2 TI2V run 0_data (the teacher synthesizes shards from configs/prompts/tiny.txt,
TI2V with configs/prompts/tiny_first_frames) -> 1_analyze -> 2_plan -> 3_stage2 -> 4_stage3 -> 5_decoder
(Wan 2.1: the light VAE decoder; Wan 2.2 and HunyuanVideo: a stated skip) -> export; the stock WanPipeline
loads the export (and Wan 2.1's light-decoder export) and generates. evaluate / bench / report come from other modules
(fastlight.evaluate.real, fastlight.evaluate.pipeline_bench) and are left out with --only here.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fastlight.cli import main
from fastlight.data.video import read_video
from fastlight.config import load_config
from fastlight.models import presets
from fastlight.plugins import registered
from fastlight.report.samples import LABEL_STRIP_PX
from fastlight.run.pipeline import Run, RunConfig, pipeline_headline, resolve, split_overrides, stages
from tests.entry_points import write_dist_info

ROOT = Path(__file__).resolve().parents[2]
WAN21 = ROOT / "configs" / "wan" / "wan21_t2v_1.3b.yaml"
WAN22 = ROOT / "configs" / "wan" / "wan22_ti2v_5b.yaml"
HUNYUAN = ROOT / "configs" / "hunyuan" / "hunyuanvideo_t2v.yaml"
THROUGH_EXPORT = "0_data,1_analyze,2_plan,3_stage2,4_stage3,5_decoder,export"
TINY_PRESETS = {"tiny-wan21-t2v": "tiny_wan21_t2v", "tiny-wan22-ti2v": "tiny_wan22_ti2v",
                "tiny-hunyuan-t2v": "tiny_hunyuan_t2v"}


def register_tiny_presets(folder: Path) -> Path:
    """A dist-info folder registering the tiny presets (pyproject's entry points), for a checkout whose
    installed metadata predates them; returns the folder to put on sys.path."""
    lines = [f"{name} = fastlight.models.presets:{attr}" for name, attr in TINY_PRESETS.items()]
    return write_dist_info(folder, "fastlight-tiny-presets-test", "fastlight.models", lines)


@pytest.fixture(scope="module")
def real_env(tmp_path_factory):
    """The tiny presets resolvable (entry points), their cache in the session's temp folder, cwd = the repo
    (the recipes name configs/prompts/... relative to it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(presets.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "fastlight_cache"))
    if not set(TINY_PRESETS) <= set(registered("fastlight.models")):
        mp.syspath_prepend(str(register_tiny_presets(tmp_path_factory.mktemp("entry_points"))))
    mp.chdir(ROOT)
    yield
    mp.undo()


def _run(recipe: Path, out: Path, *extra: str) -> int:
    return main(["run", str(recipe), "preset=tiny", f"out={out}", *extra, "--only", THROUGH_EXPORT])


def _generate(folder: Path) -> np.ndarray:
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(str(folder))
    call = json.loads((folder / "fastlight_export.json").read_text())["call"]
    out = pipe("a red circle moves left", num_inference_steps=call["num_inference_steps"],
               guidance_scale=call["guidance_scale"], num_frames=9, height=32, width=32, output_type="np",
               generator=torch.Generator().manual_seed(0))
    return np.asarray(out.frames[0])


@pytest.fixture(scope="module")
def wan21_run(real_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("wan21") / "run"
    assert _run(WAN21, out) == 0
    return out


def _done(out: Path) -> dict:
    return {d.name: json.loads((d / ".done.json").read_text()) for d in out.iterdir() if (d / ".done.json").exists()}


def test_wan21_tiny_run_through_export(wan21_run, capsys):
    out = wan21_run
    done = _done(out)
    assert sorted(done) == sorted(THROUGH_EXPORT.split(","))
    assert done["0_data"]["summary"]["num_samples"] == 4  # 4 prompts x 1 sample, from configs/prompts/tiny.txt
    index = json.loads((out / "0_data" / "shards" / "index.json").read_text())
    assert index["synthesize"]["settings"]["sampler"]["shift"] == 3.0  # the pipeline scheduler's flow_shift
    plan = done["2_plan"]["summary"]
    assert plan["kind"] == "depth" and plan["drop_blocks"] and plan["removed_fraction"] >= 0.3
    # the training stages read the synthesized shards at the pipeline's shift; their configs sit in the stage folders
    s2 = yaml.safe_load((out / "3_stage2" / "config.yaml").read_text())
    assert s2["data"] == {"_component_": "latents", "path": str(out / "0_data" / "shards")} and s2["shift"] == 3.0
    assert yaml.safe_load((out / "4_stage3" / "config.yaml").read_text())["teacher"] == str(out / "3_stage2" / "model")
    export = out / "export" / "pipeline"
    info = json.loads((export / "fastlight_export.json").read_text())
    assert info["pipeline"] == "WanPipeline" and info["call"]["num_inference_steps"] == 4
    frames = _generate(export)
    assert frames.shape == (9, 32, 32, 3) and np.isfinite(frames).all()
    from diffusers import WanPipeline

    assert len(WanPipeline.from_pretrained(str(export)).transformer.blocks) == 4 - len(plan["drop_blocks"])
    # the light decoder: the pipeline's own VAE pruned and distilled on the run's shards, exported as the vae
    dec = done["5_decoder"]["summary"]
    assert dec["decoder_params"] < dec["decoder_params_before"] and dec["steps"] == 2
    assert dec["decoder_base_dim"]["to"] < dec["decoder_base_dim"]["from"]
    distill = yaml.safe_load((out / "5_decoder" / "distill" / "config.yaml").read_text())
    assert distill["latents"] == str(out / "0_data" / "shards") and distill["student"] == str(out / "5_decoder" / "pruned")
    light = out / "export" / "pipeline_light"
    assert done["export"]["summary"]["light_pipeline"] == str(light)
    pipe = WanPipeline.from_pretrained(str(light))
    assert sum(p.numel() for p in pipe.vae.decoder.parameters()) == dec["decoder_params"]
    assert pipe.vae.config.decoder_base_dim == dec["decoder_base_dim"]["to"]
    vae_info = json.loads((light / "fastlight_export.json").read_text())["vae"]
    assert vae_info["decoder_params"] == dec["decoder_params"] and vae_info["decoder_params_full"] == dec["decoder_params_before"]
    assert (light / "vae" / "manifest.json").is_file()
    light_frames = _generate(light)  # the same student, the light decoder: same shape, other pixels
    assert light_frames.shape == frames.shape and np.isfinite(light_frames).all()
    state = json.loads((out / "run.json").read_text())
    assert state["headline"] == "incomplete run"  # evaluate and bench have not run


def test_wan21_rerun_skips_done_stages(wan21_run, capsys):
    before = _done(wan21_run)
    written = {f: f.stat().st_mtime_ns for f in (wan21_run / "0_data" / "shards" / "index.json",
                                                 wan21_run / "4_stage3" / "model" / "config.json",
                                                 wan21_run / "export" / "pipeline" / "model_index.json")}
    capsys.readouterr()
    assert _run(WAN21, wan21_run) == 0
    logs = "".join(capsys.readouterr())
    assert "DppRecipe" not in logs and "DmdRecipe" not in logs and "DecoderDistillRecipe" not in logs  # none ran again
    assert _done(wan21_run) == before and {f: f.stat().st_mtime_ns for f in written} == written


def test_a_training_stage_finished_elsewhere_is_not_trained_again(wan21_run):
    """What the many-GPU workflow relies on: a stage folder trained to its last step (e.g. by `accelerate launch
    ... train --recipe dpp RUN/3_stage2/config.yaml`) is used as it is, and only for the very same config."""
    import dataclasses

    from fastlight.config import from_dict
    from fastlight.run.pipeline import stage2_config, stage3_config, trained_elsewhere

    cfg = resolve(load_config(RunConfig, WAN21, ["preset=tiny", f"out={wan21_run}"]), frozenset({"out"}))
    run = Run(cfg)
    for build in (stage2_config, stage3_config):
        stage = build(run)[1]
        # the config as the train verb reads it back from the stage folder's config.yaml
        saved = yaml.safe_load((Path(stage.out) / "config.yaml").read_text())
        assert trained_elsewhere(from_dict(type(stage), saved)) and trained_elsewhere(stage)
        assert not trained_elsewhere(dataclasses.replace(stage, steps=stage.steps + 1))
        assert not trained_elsewhere(dataclasses.replace(stage, lr=stage.lr * 2))


def test_wan22_ti2v_tiny_run_whole(real_env, tmp_path):
    out = tmp_path / "run"
    assert _run(WAN22, out) == 0
    done = _done(out)
    assert sorted(done) == sorted(THROUGH_EXPORT.split(","))
    assert done["2_plan"]["summary"]["drop_blocks"]
    assert done["5_decoder"]["summary"]["skipped"].startswith(
        "light decoder: not supported for AutoencoderKLWan with is_residual=true")
    assert not (out / "export" / "pipeline_light").exists()
    index = json.loads((out / "0_data" / "shards" / "index.json").read_text())
    assert index["synthesize"]["settings"]["images"]["files"] == ["0.png", "1.png", "2.png", "3.png"]
    assert index["synthesize"]["settings"]["sampler"]["shift"] == 5.0
    export = out / "export" / "pipeline"
    assert json.loads((export / "model_index.json").read_text())["expand_timesteps"] is True
    frames = _generate(export)
    assert frames.shape == (9, 32, 32, 3) and np.isfinite(frames).all()
    # the rest of the run: the first frames reach the evaluation (the I2V dimensions are scored)
    assert main(["run", str(WAN22), "preset=tiny", f"out={out}"]) == 0
    ev = json.loads((out / "evaluate" / "eval.json").read_text())
    assert {"i2v_subject", "i2v_background"} <= set(ev["models"]["student"]["proxies"])
    assert np.isfinite(ev["pairs"]["student"]["motion_ratio"]["estimate"])
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    assert [r["nfe"] for r in rows] == [8, 4]


def _error(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err  # progress bars (a pipeline built on first use) may come before the error
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("fastlight run: error: ")
    return line


@pytest.mark.parametrize("extra, needle", [
    (["data=/somewhere/shards"], "either data: (latent shards you made) or synthesize:"),
    (["synthesize={}"], "give data=SHARDS"),
    (["synthesize.prompt=x.txt"], "synthesize has unknown key(s) ['prompt']"),
    (["eval.fps=8"], "eval has unknown key(s) ['fps']"),
    (["preset=huge"], "unknown preset 'huge': preset must be quick or full or one this config's presets: defines (full, tiny)"),
    (["method=vdmini"], "needs a video metric"),
])
def test_bad_data_options_are_one_line(real_env, tmp_path, capsys, extra, needle):
    err = _error(capsys, "run", str(WAN21), "preset=tiny", f"out={tmp_path / 'run'}", *extra)
    assert needle in err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_ti2v_without_first_frames_is_one_line(real_env, tmp_path, capsys):
    err = _error(capsys, "run", str(WAN22), "preset=tiny", f"out={tmp_path / 'run'}", "synthesize.images=")
    assert "text+image-to-video" in err and "synthesize.images=DIR" in err


def test_synthesize_on_a_model_folder_teacher_is_refused(real_env, tmp_path, capsys):
    err = _error(capsys, "run", str(ROOT / "configs" / "shapes" / "fastlightgen.yaml"), f"out={tmp_path / 'run'}",
                 "synthesize.prompts=configs/prompts/tiny.txt")
    assert "need a diffusers pipeline teacher" in err


def test_hunyuan_tiny_run_whole(real_env, tmp_path):
    """HunyuanVideo end to end through export: synthesize with its Llama + CLIP encoders (pooled
    embedding and embedded guidance in the shards), a depth plan over double and single blocks,
    Stage II / III, and an export the stock HunyuanVideoPipeline loads and generates from."""
    from diffusers import HunyuanVideoPipeline

    out = tmp_path / "run"
    assert _run(HUNYUAN, out) == 0
    done = _done(out)
    assert sorted(done) == sorted(THROUGH_EXPORT.split(","))
    assert done["2_plan"]["summary"]["drop_blocks"]
    skip = "light decoder: not supported for AutoencoderKLHunyuanVideo"
    assert done["5_decoder"]["summary"]["skipped"].startswith(skip)  # stated, not a crash
    assert not (out / "export" / "pipeline_light").exists() and not (out / "5_decoder" / "distill").exists()
    shard_keys = json.loads((out / "0_data" / "shards" / "index.json").read_text())
    assert "null" in shard_keys  # the negative prompt's embedding travels with the data
    export = out / "export" / "pipeline"
    info = json.loads((export / "fastlight_export.json").read_text())
    assert info["pipeline"] == "HunyuanVideoPipeline" and info["call"]["true_cfg_scale"] == 1.0
    pipe = HunyuanVideoPipeline.from_pretrained(str(export))
    teacher = HunyuanVideoPipeline.from_pretrained(str(presets.tiny_hunyuan_t2v()))
    kept = len(pipe.transformer.transformer_blocks) + len(pipe.transformer.single_transformer_blocks)
    total = len(teacher.transformer.transformer_blocks) + len(teacher.transformer.single_transformer_blocks)
    assert kept == total - len(done["2_plan"]["summary"]["drop_blocks"])
    torch.manual_seed(0)
    frames = pipe("a red circle moves left", num_inference_steps=info["call"]["num_inference_steps"],
                  guidance_scale=info["call"]["guidance_scale"], true_cfg_scale=1.0, num_frames=9, height=32,
                  width=32, output_type="np").frames[0]
    assert np.asarray(frames).shape == (9, 32, 32, 3) and np.isfinite(np.asarray(frames)).all()
    # the rest of the run: the evaluation drives HunyuanVideo's encoders, the bench its stock pipeline
    assert main(["run", str(HUNYUAN), "preset=tiny", f"out={out}"]) == 0
    ev = json.loads((out / "evaluate" / "eval.json").read_text())
    assert np.isfinite(ev["pairs"]["student"]["frechet_distance"]["estimate"])
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    assert [(r["pipeline"], r["nfe"]) for r in rows] == [("HunyuanVideoPipeline", 4)] * 2  # embedded guidance: 1 pass
    assert skip in (out / "report" / "report.md").read_text()


def test_wan21_tiny_run_whole_with_evaluate_bench_report(wan21_run, tmp_path, capsys):
    """The whole compression on the tiny Wan 2.1 pipeline, the real evaluation and bench included:
    the evaluate stage writes the teacher's and the student's videos and scores with intervals, the
    bench times the stock teacher pipeline against the export, and the headline states both."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(wan21_run, out)  # stages through export are done: only evaluate, bench, report run
    assert main(["run", str(WAN21), "preset=tiny", f"out={out}"]) == 0
    ev = json.loads((out / "evaluate" / "eval.json").read_text())
    assert ev["reference"] == "teacher" and ev["num_prompts"] == 4
    fd = ev["pairs"]["student"]["frechet_distance"]
    assert np.isfinite(fd["estimate"]) and fd["low"] <= fd["estimate"] <= fd["high"]
    for name in ("teacher", "student"):
        videos = ev["models"][name]["videos"]
        assert len(videos) == 4 and all((out / "evaluate" / v).is_file() for v in videos)
    # the third row: the student's own samples decoded by the light decoder
    light = ev["models"]["student_light"]
    assert light["latents_of"] == "student" and Path(light["decoder"]) == out / "5_decoder" / "distill" / "model"
    psnr = light["decoder_psnr_db"]
    assert np.isfinite(psnr["estimate"]) and psnr["low"] <= psnr["estimate"] <= psnr["high"] < 100
    assert len(light["videos"]) == 4 and all((out / "evaluate" / v).is_file() for v in light["videos"])
    assert ev["pairs"]["student_light"]["frechet_distance"] == ev["pairs"]["student"]["frechet_distance"]  # same latents
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    # teacher 4 steps x CFG, student 4 steps without CFG, twice: full and light decoder, in the same rounds
    assert [(r["model"], r["nfe"]) for r in rows] == [("teacher", 8), ("student", 4), ("student_light", 4)]
    assert Path(rows[2]["path"]) == out / "export" / "pipeline_light"
    dec = json.loads((out / "5_decoder" / ".done.json").read_text())["summary"]
    assert rows[2]["decoder_params"] == dec["decoder_params"] < rows[1]["decoder_params"] == rows[0]["decoder_params"]
    state = json.loads((out / "run.json").read_text())
    assert "Frechet distance to the teacher" in state["headline"] and "denoise only" in state["headline"]
    assert "with the light decoder" in state["headline"]
    report = (out / "report" / "report.md").read_text()
    assert state["headline"] in report
    table = [ln for ln in report.splitlines() if ln.startswith(("| teacher + full", "| student + full", "| student + light"))]
    assert len(table) == 3 and f"{state['stages']['5_decoder']['summary']['decoder_params']:,}" in table[2]
    # the rows side by side: three label strips over lines of the evaluation's first videos, in the md and html
    gif = read_video(out / "report" / "samples.gif")
    frames = read_video(out / "evaluate" / ev["models"]["teacher"]["videos"][0])
    assert gif.shape[0] == frames.shape[0] and gif.shape[1] == 3 * (LABEL_STRIP_PX + frames.shape[1])
    assert "![samples](samples.gif)" in report
    page = (out / "report" / "report.html").read_text()
    assert "data:image/gif;base64," in page and "<td>student + light decoder</td>" in page


def test_recipes_open_with_their_command_and_resolve(real_env):
    for path in (WAN21, WAN22, HUNYUAN):
        rel = path.relative_to(ROOT)
        assert path.read_text().startswith(f"# fastlight run {rel} ")
        cfg = resolve(load_config(RunConfig, path, ["preset=tiny"]))
        names = [s.name for s in stages(cfg)]
        assert names == ["0_data", "1_analyze", "2_plan", "3_stage2", "4_stage3", "5_decoder", "export", "evaluate",
                         "bench", "report"]
        decoder = stages(cfg)[names.index("5_decoder")].what  # the stage table says up front what the stage will do
        assert decoder.startswith("light decoder: prune 75%") if path == WAN21 else decoder.endswith(": skipped")
        assert Run(cfg).data == {"_component_": "latents", "path": str(Path(cfg.out) / "0_data" / "shards")}
    # the paper's settings: Stage II lr 1e-5, 4,000 steps, alpha 1; Stage III lr 5e-7, 1,000 steps, batch 16
    for path, beta1 in ((WAN21, 3.5), (WAN22, 3.5), (HUNYUAN, 2.0)):
        raw = yaml.safe_load(path.read_text())
        s2, s3 = raw["stage2"], raw["stage3"]
        assert (s2["lr"], s2["steps"], s2["alpha"], s2["mixed_precision"], s2["gradient_checkpointing"]) == \
            (1e-5, 4000, 1.0, "bf16", True)
        assert (s3["lr"], s3["steps"], s3["batch_size"], s3["beta1_min"], s3["beta1_max"], s3["guide_beta2"]) == \
            (5e-7, 1000, 16, beta1, beta1, 0.25)
        assert raw["prune_ratio"] == 0.3
        # the light decoder: 75% of the VAE decoder pruned, 2,000 distillation steps; 2 in the tiny preset
        assert (raw["decoder"]["prune_ratio"], raw["decoder"]["steps"]) == (0.75, 2000)
        assert raw["presets"]["tiny"]["decoder"]["steps"] == 2


@pytest.mark.parametrize("recipe, geometry, shape", [
    (WAN21, "wan2.1-t2v-1.3b", "81x480x832"), (WAN22, "wan2.2-ti2v-5b", "121x704x1280"),
    (HUNYUAN, "hunyuanvideo-t2v-13b", "129x720x1280")])
def test_dry_run_plans_the_recipe_geometry(real_env, capsys, recipe, geometry, shape):
    """The teacher folder is not on this machine: the plan uses the recipe's geometry and video size."""
    capsys.readouterr()
    assert main(["run", str(recipe), "data=/not/here/shards", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"memory per GPU for {geometry}" in text and f"{shape} video" in text
    assert "0_data" not in text and "export" in text  # data= given: no synthesize stage


def test_dry_run_without_data_names_both_options(real_env, capsys):
    err = _error(capsys, "run", str(WAN21), "--dry-run")
    assert "data=SHARDS" in err and "synthesize.prompts=" in err


def test_split_overrides_takes_synthesize_and_eval_keys():
    plain, nested = split_overrides(["teacher=x", "synthesize.prompts=p.txt", "eval.num_frames=17", "stage2.lr=1e-5"])
    assert plain == ["teacher=x"]
    assert nested["synthesize"] == {"prompts": "p.txt"} and nested["eval"] == {"num_frames": 17}


def test_pipeline_headline_states_intervals_and_both_speedups():
    ev = {"num_prompts": 16, "frechet_distance": {"estimate": 12.5, "low": 10.25, "high": 15.0},
          "motion_ratio": {"estimate": 0.8123, "low": 0.7, "high": 0.93}}
    be = {"teacher_s": 120.0, "student_s": 9.5, "speedup": 12.63, "teacher_denoise_s": 110.0,
          "student_denoise_s": 3.2, "denoise_speedup": 34.4}
    line = pipeline_headline("fastlightgen student (4 few-step steps, 30% of the parameters removed)", ev, be)
    assert line == ("fastlightgen student (4 few-step steps, 30% of the parameters removed): Frechet distance to the "
                    "teacher 12.5 [10.2, 15], motion ratio 0.81 [0.70, 0.93] (student / teacher; 95%, 16 prompts); "
                    "12.6x faster end to end (9.5 s vs 120 s per video), 34.4x denoise only")


@pytest.mark.parametrize("name, processes, machines", [("fsdp2_8gpu_bf16", 8, 1), ("fsdp2_16gpu_2nodes_bf16", 16, 2)])
def test_real_model_accelerate_configs_parse(name, processes, machines):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
    assert path.read_text().startswith("# accelerate launch --config_file configs/accelerate/")
    c = load_config_from_file(str(path))
    assert isinstance(c, ClusterConfig) and c.distributed_type.value == "FSDP" and c.mixed_precision == "bf16"
    assert (c.num_processes, c.num_machines) == (processes, machines)
    assert c.fsdp_config["fsdp_version"] == 2 and c.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_tiny_preset_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path))
    folder = presets.tiny_wan21_t2v()
    assert folder.parent == tmp_path / "tiny_pipelines" and (folder / "model_index.json").is_file()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert presets.tiny_wan21_t2v() == folder and (folder / "model_index.json").stat().st_mtime_ns == stamp


def _contract_stubs(calls: dict):
    """Stand-ins with the exact signatures of fastlight.evaluate.real.evaluate_on_pipeline and
    fastlight.evaluate.pipeline_bench (PipelineEntry, bench_pipelines), returning the documented keys."""
    import types
    from dataclasses import dataclass

    def iv(x):
        return {"estimate": x, "low": x * 0.8, "high": x * 1.2}

    def evaluate_on_pipeline(pipeline, models, prompts, out_dir, *, num_frames, height, width, seed=0, images=None,
                             videos=True, progress=True, batch_size=1, decoders=None):
        calls["evaluate"] = dict(pipeline=pipeline, models=models, prompts=prompts, out_dir=out_dir,
                                 size=(num_frames, height, width), seed=seed, images=images, decoders=decoders,
                                 batch_size=batch_size)
        rows = [*models, *(decoders or {})]
        pair = {"frechet_distance": iv(12.5), "motion_ratio": iv(0.8),
                "proxy_differences": {"subject_consistency": iv(-0.01)}}
        out = {"models": {n: {"proxies": {"subject_consistency": iv(0.9)}, "motion": iv(2.0), "videos": []}
                          for n in rows},
               "pairs": {"student": pair}}
        for row in decoders or {}:
            out["models"][row]["decoder_psnr_db"] = iv(31.0)
            out["pairs"][row] = {**pair, "motion_ratio": iv(0.7)}
        return out

    @dataclass
    class PipelineEntry:
        name: str
        path: str
        num_inference_steps: int | None = None
        guidance_scale: float | None = None

    def bench_pipelines(entries, prompts, *, num_frames, height, width, repeats=3, warmup=1, seed=0, device=None,
                        out_json=None, progress=True):
        calls["bench"] = dict(entries=entries, prompts=prompts, size=(num_frames, height, width), repeats=repeats,
                              out_json=out_json)
        rows = [{"time_s": {"median": 4.0}, "denoise_s": 3.5, "decode_s": 0.3, "speedup": 1.0, "denoise_speedup": 1.0},
                {"time_s": {"median": 0.5}, "denoise_s": 0.1, "decode_s": 0.3, "speedup": 8.0, "denoise_speedup": 35.0},
                {"time_s": {"median": 0.25}, "denoise_s": 0.1, "decode_s": 0.05, "speedup": 16.0,
                 "denoise_speedup": 35.0}]
        return rows[:len(entries)]

    def pipeline_oracle(pipeline, *, num_frames, height, width, seed=0):
        return None  # a Wan pipeline: no world oracle (the prompts path)

    def evaluate_oracle_cases(pipeline, models, oracle, num_cases, out_dir, **kw):
        raise AssertionError("a Wan pipeline has no oracle")

    real = types.ModuleType("fastlight.evaluate.real")
    real.evaluate_on_pipeline = evaluate_on_pipeline
    real.pipeline_oracle, real.evaluate_oracle_cases = pipeline_oracle, evaluate_oracle_cases
    bench = types.ModuleType("fastlight.evaluate.pipeline_bench")
    bench.PipelineEntry, bench.bench_pipelines = PipelineEntry, bench_pipelines
    return real, bench


def test_a_finished_run_continues_under_a_new_eval_batch_size_only(wan21_run, tmp_path, capsys):
    """eval.batch_size does not change what evaluate writes (one generator per video): the folder accepts it,
    redoing nothing; any other eval key is a different config, refused in one line."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(wan21_run, out)
    before = {n: d["wall_s"] for n, d in _done(out).items()}
    capsys.readouterr()
    assert _run(WAN21, out, "eval.batch_size=2") == 0
    assert {n: d["wall_s"] for n, d in _done(out).items()} == before
    assert yaml.safe_load((out / "config.yaml").read_text())["eval"]["batch_size"] == 2
    assert _run(WAN21, out, "eval.num_frames=5") == 2
    err = capsys.readouterr().err
    assert "different config (eval differ)" in err and len(err.strip().splitlines()) == 1


def test_contract_stubs_take_only_what_the_real_functions_take():
    """Every parameter of a stand-in exists in the real function, of the same kind: a stage that passes a key the
    real function lacks fails the stand-in test too, and a stand-in cannot fall behind a real keyword unnoticed
    once the stage passes it."""
    import inspect

    import fastlight.evaluate.pipeline_bench as real_bench
    import fastlight.evaluate.real as real_eval

    real, bench = _contract_stubs({})
    pairs = [(real.evaluate_on_pipeline, real_eval.evaluate_on_pipeline),
             (real.pipeline_oracle, real_eval.pipeline_oracle),
             (bench.bench_pipelines, real_bench.bench_pipelines)]
    for stub, true in pairs:
        want = inspect.signature(true).parameters
        for name, p in inspect.signature(stub).parameters.items():
            assert name in want and want[name].kind == p.kind, (true.__name__, name)


def test_evaluate_bench_report_stages_call_the_real_model_contracts(wan21_run, tmp_path, monkeypatch, capsys):
    """evaluate / bench / report of a pipeline run, against stand-ins of the modules they call: the
    arguments they pass, the summaries, the headline and the report."""
    import shutil
    import sys

    from fastlight.diffusion.spec import SamplerSpec

    out = tmp_path / "run"
    shutil.copytree(wan21_run, out)
    calls: dict = {}
    real, bench = _contract_stubs(calls)
    monkeypatch.setitem(sys.modules, "fastlight.evaluate.real", real)
    monkeypatch.setitem(sys.modules, "fastlight.evaluate.pipeline_bench", bench)
    capsys.readouterr()
    assert main(["run", str(WAN21), "preset=tiny", f"out={out}"]) == 0
    ev, be = calls["evaluate"], calls["bench"]
    teacher = presets.tiny_wan21_t2v()
    assert Path(ev["pipeline"]) == teacher and ev["size"] == (9, 32, 32) and len(ev["prompts"]) == 4
    assert list(ev["models"]) == ["teacher", "student"]
    t_dir, t_spec = ev["models"]["teacher"]
    assert Path(t_dir) == teacher / "transformer" and t_spec == SamplerSpec.euler(4, 5.0, 3.0)
    s_dir, s_spec = ev["models"]["student"]
    assert Path(s_dir) == out / "4_stage3" / "model" and s_spec.kind == "few_step" and s_spec.num_steps == 4
    assert ev["decoders"] == {"student_light": ("student", out / "5_decoder" / "distill" / "model")}
    assert ev["batch_size"] == 1  # eval.batch_size's default
    assert [(e.name, Path(e.path), e.num_inference_steps, e.guidance_scale) for e in be["entries"]] == \
        [("teacher", teacher, 4, 5.0), ("student", out / "export" / "pipeline", None, None),
         ("student_light", out / "export" / "pipeline_light", None, None)]
    assert be["repeats"] == 1 and be["out_json"] == str(out / "bench" / "bench.json")
    state = json.loads((out / "run.json").read_text())
    assert "Frechet distance to the teacher 12.5 [10, 15], motion ratio 0.80 [0.64, 0.96]" in state["headline"]
    assert "8.0x faster end to end" in state["headline"] and "35.0x denoise only" in state["headline"]
    assert "with the light decoder 16.0x end to end (0.25 s per video), decoder PSNR vs full 31.0 [24.8, 37.2] dB" \
        in state["headline"]
    report = (out / "report" / "report.md").read_text()
    assert state["headline"] in report and "| denoise only (s per video) | 3.5 | 0.1 | 35.0x |" in report
    params = state["stages"]["5_decoder"]["summary"]
    assert (f"| student + light decoder | {params['decoder_params']:,} | 12.5 [10, 15] | 0.70 [0.56, 0.84] | "
            "31.0 [24.8, 37.2] | 0.25 | 16.0x | 0.1 | 35.0x | 0.05 |") in report
    assert f"| teacher + full decoder | {params['decoder_params_before']:,} | 0 (reference)" in report
    assert state["headline"] in capsys.readouterr().out


def test_decoder_off_and_bad_keys(real_env, tmp_path, capsys):
    """decoder.enabled=false and decoder=none drop stage 5_decoder; a bad decoder key is one line, before any work."""
    for extra in (["decoder.enabled=false"], ["decoder=none"]):
        plain, nested = split_overrides(["preset=tiny", *extra])
        cfg = resolve(load_config(RunConfig, WAN21, plain), frozenset(k.split("=")[0] for k in plain), nested)
        names = [s.name for s in stages(cfg)]
        assert "5_decoder" not in names and names[names.index("4_stage3") + 1] == "export"
    plain, nested = split_overrides(["preset=tiny", "decoder.steps=7"])
    cfg = resolve(load_config(RunConfig, WAN21, plain), frozenset({"preset"}), nested)
    assert cfg.decoder["steps"] == 7 and cfg.decoder["calib"] == 4  # the command line over the tiny preset's
    decoder = next(s for s in stages(cfg) if s.name == "5_decoder")
    assert "7 steps" in decoder.what and decoder.est_s > 0
    plain, nested = split_overrides(["preset=tiny", "decoder.student=fast"])  # named as such: nothing is pruned
    cfg = resolve(load_config(RunConfig, WAN21, plain), frozenset({"preset"}), nested)
    fast = next(s for s in stages(cfg) if s.name == "5_decoder")
    assert fast.what.startswith("light decoder: a FastWanDecoder (width 16) distilled from scratch")
    assert "prune" not in fast.what and fast.est_s > 0
    plain, nested = split_overrides(["preset=tiny", "decoder.student=fast", "decoder.fast_time_levels=1",
                                     "decoder.fast_latent_blocks=1"])  # the default depth is not repeated
    cfg = resolve(load_config(RunConfig, WAN21, plain), frozenset({"preset"}), nested)
    deep = next(s for s in stages(cfg) if s.name == "5_decoder")
    assert deep.what.startswith("light decoder: a FastWanDecoder (width 16, 1 time-mixing levels) distilled")
    err = _error(capsys, "run", str(WAN21), "preset=tiny", f"out={tmp_path / 'run'}", "decoder.stepz=3")
    assert "decoder has unknown key(s) ['stepz']" in err
    err = _error(capsys, "run", str(WAN21), "preset=tiny", f"out={tmp_path / 'run'}", "decoder.lr=-1")
    assert "lr must be > 0" in err
    assert not (tmp_path / "run").exists()
    err = _error(capsys, "run", str(ROOT / "configs" / "shapes" / "fastlightgen.yaml"), f"out={tmp_path / 'run'}",
                 "decoder.steps=3")
    assert "need a diffusers pipeline teacher" in err


def test_decoder_stage_resumes(wan21_run, tmp_path, capsys):
    """An interrupted 5_decoder (no .done.json, no model/ yet) continues: the pruned folder is kept, the training
    resumes from its checkpoint (no step trained twice); `--only 5_decoder` runs just it."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(wan21_run, out)
    stage = out / "5_decoder"
    (stage / ".done.json").unlink()
    shutil.rmtree(stage / "distill" / "model")
    pruned = (stage / "pruned" / "manifest.json").stat().st_mtime_ns
    metrics = (stage / "distill" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["run", str(WAN21), "preset=tiny", f"out={out}", "--only", "5_decoder"]) == 0
    logs = "".join(capsys.readouterr())
    assert "scoring decoder channels" not in logs  # not pruned again
    assert (stage / "pruned" / "manifest.json").stat().st_mtime_ns == pruned
    assert (stage / "distill" / "metrics.jsonl").read_text() == metrics  # resumed at its last step: nothing re-trained
    assert (stage / "distill" / "model" / "config.json").is_file()
    assert json.loads((stage / ".done.json").read_text())["summary"]["decoder_params"] > 0


def test_decoder_pool_samples_the_student_on_the_training_stream(wan21_run, tmp_path):
    """decoder.sample_from: student: the light decoder's latents are the run's student's own samples (its
    sampler, conditions from the run's shards on the `decoder` stream), written once and reused, and the
    stage's training takes them."""
    from safetensors.torch import load_file

    from fastlight.decoder.stage import build_light_decoder, decoder_settings
    from fastlight.errors import ConfigError
    from fastlight.run.pipeline import STUDENT_POOL_FILE, decoder_latents, decoder_pool, teacher_folder

    run = Run(RunConfig(**yaml.safe_load((wan21_run / "config.yaml").read_text())))
    settings = decoder_settings({"student": "fast", "fast_width": 4, "sample_from": "student", "pool_size": 3,
                                 "steps": 2, "batch_size": 1, "save_every": 1})
    assert decoder_latents(run) == wan21_run / "0_data" / "shards"  # the recipe's default: the data
    assert decoder_latents(run, settings, tmp_path) == tmp_path / STUDENT_POOL_FILE  # named, not sampled
    assert not (tmp_path / STUDENT_POOL_FILE).exists()
    pool = decoder_pool(run, settings, tmp_path, progress=False)
    z = load_file(str(pool))["latents"]
    x0 = load_file(str(next((wan21_run / "0_data" / "shards").glob("latents_*.safetensors"))))["x0"]
    assert z.shape == (3, *x0.shape[1:]) and torch.isfinite(z).all()
    assert not any(torch.allclose(zi, xi) for zi in z for xi in x0.float())  # samples, not the shards' clips
    record = json.loads(pool.with_name(pool.name + ".json").read_text())
    assert record["num"] == 3 and record["sampler"]["sampler"] == "few_step" and record["student"].endswith("model")
    stamp = pool.stat().st_mtime_ns
    assert decoder_pool(run, settings, tmp_path, progress=False).stat().st_mtime_ns == stamp  # reused
    more = decoder_pool(run, {**settings, "pool_size": 4}, tmp_path, progress=False)
    assert load_file(str(more))["latents"].shape[0] == 4  # another pool asked for: sampled again
    summary = build_light_decoder(teacher_folder(run.cfg) / "vae", more, tmp_path, settings, threads=1,
                                  progress=False)
    distill = yaml.safe_load((tmp_path / "distill" / "config.yaml").read_text())
    assert distill["latents"] == str(more) and summary["vae_class"] == "FastWanDecoder"
    with pytest.raises(ConfigError, match="decoder.sample_from must be one of data, student"):
        decoder_settings({"sample_from": "teacher"})


def test_eval_batch_size_is_evaluates_own_and_checked():
    """eval.batch_size (default 1) is evaluate's batch; synthesize's batch_size is not inherited as it."""
    from fastlight.run.pipeline import eval_options

    assert eval_options(RunConfig(synthesize={"prompts": "p.txt", "batch_size": 6}))["batch_size"] == 1
    assert eval_options(RunConfig(synthesize={"batch_size": 6}, eval={"batch_size": 8}))["batch_size"] == 8
    shipped = load_config(RunConfig, Path(__file__).resolve().parents[2] / "configs" / "shapes" / "pipeline.yaml")
    assert eval_options(shipped)["batch_size"] == 8  # the demo's evaluate: 8 prompts at a time (batch-invariant)
