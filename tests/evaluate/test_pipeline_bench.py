"""fastlight.evaluate.pipeline_bench and `fastlight bench --pipeline`: the stock tiny Wan 2.1 teacher
(6 steps, CFG) against a student exported with `export_diffusers` (one block pruned, 2 few-step
steps, guidance 1, read from its fastlight_export.json), the tiny HunyuanVideo and an image-to-video
pipeline; counted NFE, phases, the speedup formulas, the table, the JSON, bad input. CPU, tiny
sizes; never asserts a timing threshold."""
import json
import math
import shutil
from pathlib import Path

import diffusers
import numpy as np
import pytest
from safetensors import safe_open

from fastlight.cli import main
from fastlight.diffusion.spec import SamplerSpec
from fastlight.evaluate.pipeline_bench import (PipelineEntry, bench_pipelines, first_frame, parse_pipeline_spec,
                                               table_lines)
from fastlight.export.to_diffusers import export_diffusers
from fastlight.models.load import load_denoiser
from fastlight.prune.surgery import prune_depth

ROW_KEYS = {"model", "path", "pipeline", "num_inference_steps", "guidance_scale", "nfe", "dit_params", "time_s",
            "text_s", "denoise_s", "decode_s", "peak_mem_mb", "mem_method", "speedup", "denoise_speedup", "device"}
SIZE = dict(num_frames=5, height=32, width=32)  # 2 latent frames of 4x4 (Wan 2.1 VAE: 4x time, 8x space)
PROMPTS = ["a red circle moves left quickly"]
TOL = 1e-3  # seconds: phase boundaries and the end-to-end marks are separate clock reads


def _copy(src: Path, dst: Path) -> Path:
    """A pipeline folder copy sharing the weight files (hard links)."""
    shutil.copytree(src, dst, copy_function=lambda a, b: shutil.copy2(a, b) if a.endswith(".json") else _link(a, b))
    return dst


def _link(a, b):
    try:
        Path(b).hardlink_to(a)
    except OSError:
        shutil.copy2(a, b)


def _edit_json(path: Path, **changes) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def teacher(tiny_pipeline):
    return tiny_pipeline("wan21-t2v")


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory):
    """The teacher's transformer with block 1 dropped, a 2-step few-step sampler (guidance 1),
    exported as a stock WanPipeline folder by `fastlight export --format diffusers`'s component."""
    root = tmp_path_factory.mktemp("student")
    den = prune_depth(load_denoiser(teacher), [1])
    den.save(root / "run" / "model")
    SamplerSpec.few_step((1000, 500), guidance=1.0).save(root / "run" / "model")
    return export_diffusers(str(root / "run"), str(root / "export"), source=str(teacher))


@pytest.fixture(scope="module")
def bench_result(teacher, student, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    rows = bench_pipelines([PipelineEntry("teacher", str(teacher), num_inference_steps=6),
                            PipelineEntry("student", str(student))],
                           PROMPTS, **SIZE, repeats=2, warmup=1, device="cpu", out_json=out, progress=False)
    return rows, out


def _tensor_bytes(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*.safetensors"):
        if f.name == "null_text.safetensors":  # fastlight's null text: not a pipeline component's weight
            continue
        with safe_open(str(f), "pt") as fh:
            for k in fh.keys():
                t = fh.get_slice(k)
                n = math.prod(t.get_shape())
                total += n * {"F32": 4, "BF16": 2, "F16": 2, "I64": 8}.get(t.get_dtype(), 4)
    return total


# ---- teacher vs exported student ----------------------------------------------------------------------
def test_rows_have_the_keys_the_counted_nfe_and_the_call_arguments(bench_result, teacher, student):
    rows, _ = bench_result
    assert [r["model"] for r in rows] == ["teacher", "student"]
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert set(r["time_s"]) == {"median", "min", "max", "runs"}
        assert len(r["time_s"]["runs"]) == 2 * r["calls_per_round"] and 1 <= r["calls_per_round"] <= 5
        assert r["time_s"]["min"] <= r["time_s"]["median"] <= r["time_s"]["max"]
        assert r["pipeline"] == "WanPipeline" and r["device"] == "cpu"
    t, s = rows
    # the teacher: 6 steps given, the WanPipeline's default guidance 5 -> CFG, two forwards per step
    assert (t["num_inference_steps"], t["guidance_scale"], t["cfg"], t["nfe"], t["forwards"]) == (6, 5.0, True, 12, 12)
    # the student: steps and guidance from its fastlight_export.json call; guidance 1 -> no CFG
    call = json.loads((student / "fastlight_export.json").read_text())["call"]
    assert (call["num_inference_steps"], call["guidance_scale"]) == (2, 1.0)
    assert (s["num_inference_steps"], s["guidance_scale"], s["cfg"], s["nfe"], s["forwards"]) == (2, 1.0, False, 2, 2)
    assert s["dit_params"] < t["dit_params"]  # one block pruned
    assert (t["path"], s["path"]) == (str(teacher), str(student))


def test_phases_are_positive_and_within_end_to_end(bench_result):
    for r in bench_result[0]:
        assert r["text_s"] > 0 and r["denoise_s"] > 0 and r["decode_s"] > 0
        # medians of 2 runs are means: the phases' sum is within the end-to-end median
        assert r["text_s"] + r["denoise_s"] + r["decode_s"] <= r["time_s"]["median"] + TOL


def test_speedups_are_the_ratios_of_the_first_rows_times(bench_result):
    t, s = bench_result[0]
    assert t["speedup"] == 1.0 and t["denoise_speedup"] == 1.0
    assert s["speedup"] == pytest.approx(t["time_s"]["median"] / s["time_s"]["median"], rel=1e-9)
    assert s["denoise_speedup"] == pytest.approx(t["denoise_s"] / s["denoise_s"], rel=1e-9)


def test_peak_memory_is_own_weights_plus_the_runs_increase(bench_result, teacher, student):
    for r, folder in zip(bench_result[0], (teacher, student)):
        assert r["mem_method"] == "cpu rss"
        assert r["weights_mb"] * 2**20 >= _tensor_bytes(folder)  # + non-persistent buffers (rope tables)
        if r["peak_mem_mb"] is not None:  # a per-run RSS probe exists (Linux, or psutil)
            assert r["run_mem_mb"] >= 0 and r["peak_mem_mb"] == pytest.approx(r["weights_mb"] + r["run_mem_mb"])
    t, s = bench_result[0]
    assert s["weights_mb"] < t["weights_mb"]


def test_json_holds_the_rows_and_the_settings(bench_result):
    rows, out = bench_result
    doc = json.loads(out.read_text())
    assert doc["rows"] == json.loads(json.dumps(rows))
    assert (doc["num_frames"], doc["height"], doc["width"], doc["repeats"], doc["warmup"]) == (5, 32, 32, 2, 1)
    assert doc["prompts"] == PROMPTS and doc["diffusers"] == diffusers.__version__
    assert not [p for p in out.parent.iterdir() if p != out]  # written atomically: no temp file left


def test_table_never_wraps_or_cuts_names_and_ratios(bench_result):
    rows = [dict(r) for r in bench_result[0]]
    long_name = "runs/" + "very-long-folder-name/" * 8 + "export:steps=2,guidance=1"
    rows[1]["model"] = long_name
    lines = table_lines(rows)
    table = lines[1:5]  # header, rule, two rows: one width, set by the widest cell, not the terminal
    assert len({len(ln) for ln in table}) == 1
    assert lines[3].startswith("teacher ") and lines[4].startswith(long_name + " ")
    assert f"{rows[1]['speedup']:.2f}x" in lines[4] and f"{rows[1]['denoise_speedup']:.2f}x" in lines[4]
    said = [ln for ln in lines if ln.startswith(f"speedup of {long_name} vs teacher:")]
    assert len(said) == 1 and "end to end" in said[0] and "denoise only" in said[0] and "NFE 12 -> 2" in said[0]
    assert any(ln.startswith("teacher: text ") and "decode" in ln for ln in lines)


def test_nfe_that_disagrees_with_the_arguments_is_caught(teacher, monkeypatch):
    # a pipeline that skips the unconditional pass although guidance 5 asks for it
    monkeypatch.setattr(diffusers.WanPipeline, "do_classifier_free_guidance", property(lambda self: False))
    with pytest.raises(RuntimeError, match=r"counted 2 transformer evaluations per video, expected 4"):
        bench_pipelines([PipelineEntry("t", str(teacher), 2, 5.0)], PROMPTS, **SIZE, repeats=1, warmup=0,
                        device="cpu", progress=False)


def test_nfe_and_times_are_per_video_with_several_prompts(teacher):
    rows = bench_pipelines([PipelineEntry("t", str(teacher), 1, 1.0)], PROMPTS * 3, **SIZE, repeats=1, warmup=0,
                           device="cpu", progress=False)
    r = rows[0]
    assert (r["nfe"], r["forwards"], r["videos_per_run"]) == (1, 1, 3)
    assert r["time_s"]["median"] == pytest.approx(r["time_s"]["runs"][0])  # one run of 3 videos, / 3


def test_hooks_mark_the_phases_and_are_removed(teacher):
    from diffusers import DiffusionPipeline

    from fastlight.evaluate.pipeline_bench import _Hooks

    pipe = DiffusionPipeline.from_pretrained(teacher)
    pipe.set_progress_bar_config(disable=True)
    hooks = _Hooks(pipe)
    assert "encode_prompt" in vars(pipe) and "decode" in vars(pipe.vae) and pipe.transformer._forward_pre_hooks
    pipe(prompt=PROMPTS[0], num_inference_steps=3, guidance_scale=4.0, output_type="np", **SIZE)
    assert (hooks.samples, hooks.forwards) == (6, 6)  # outside a bench the phases are no-ops; counting still runs
    hooks.remove()
    assert "encode_prompt" not in vars(pipe) and "decode" not in vars(pipe.vae)
    assert not pipe.transformer._forward_pre_hooks


# ---- other families ---------------------------------------------------------------------------------
def test_hunyuan_video_pipeline_runs_with_embedded_guidance(tiny_pipeline):
    """HunyuanVideo's guidance_scale feeds its guidance embedding (true CFG is true_cfg_scale): one
    forward per step, whatever the guidance."""
    folder = tiny_pipeline("hunyuan-t2v")
    rows = bench_pipelines([PipelineEntry("hy", str(folder), num_inference_steps=2)], PROMPTS, **SIZE, repeats=1,
                           warmup=0, device="cpu", progress=False)
    r = rows[0]
    assert r["pipeline"] == "HunyuanVideoPipeline"
    assert (r["guidance_scale"], r["cfg"], r["nfe"]) == (6.0, False, 2)  # the pipeline's own default guidance
    assert r["text_s"] > 0 and r["denoise_s"] > 0 and r["decode_s"] > 0 and r["speedup"] == 1.0


def test_image_to_video_pipeline_gets_a_deterministic_first_frame(tiny_pipeline, tmp_path, monkeypatch):
    """Wan 2.2 TI2V as WanImageToVideoPipeline (the class its model_index names) needs an image."""
    import diffusers.pipelines.wan.pipeline_wan_i2v as i2v

    # diffusers 0.42's I2V prompt cleaning calls ftfy unconditionally; ftfy is not installed here
    monkeypatch.setattr(i2v, "ftfy", type("ftfy", (), {"fix_text": staticmethod(lambda s: s)}), raising=False)
    folder = _copy(tiny_pipeline("wan22-ti2v"), tmp_path / "i2v")
    _edit_json(folder / "model_index.json", _class_name="WanImageToVideoPipeline")
    seen = []
    real = i2v.WanImageToVideoPipeline.__call__
    monkeypatch.setattr(i2v.WanImageToVideoPipeline, "__call__",
                        lambda self, image, **kw: seen.append(image) or real(self, image, **kw))
    rows = bench_pipelines([PipelineEntry("i2v", str(folder), 2, 1.0)], PROMPTS, **SIZE, repeats=1, warmup=0,
                           device="cpu", progress=False)
    assert rows[0]["pipeline"] == "WanImageToVideoPipeline" and rows[0]["nfe"] == 2
    assert len(seen) == 1 and seen[0].size == (32, 32)
    a = np.asarray(first_frame(32, 48))
    assert a.shape == (32, 48, 3) and np.array_equal(a, np.asarray(first_frame(32, 48))) and a.std() > 10


# ---- specs ----------------------------------------------------------------------------------------
def test_parse_pipeline_spec():
    assert parse_pipeline_spec("runs/export") == PipelineEntry("runs/export", "runs/export")
    e = parse_pipeline_spec("Wan2.1-T2V-1.3B-Diffusers:steps=50,guidance=5")
    assert (e.name, e.path, e.num_inference_steps, e.guidance_scale) == (
        "Wan2.1-T2V-1.3B-Diffusers:steps=50,guidance=5", "Wan2.1-T2V-1.3B-Diffusers", 50, 5.0)
    assert parse_pipeline_spec("w:guidance=1").guidance_scale == 1.0
    assert parse_pipeline_spec(r"C:\models\wan").path == r"C:\models\wan"  # a ':' without '=' is the path's


@pytest.mark.parametrize("spec, words", [
    ("w:foo=1", "unknown key 'foo'"),
    ("w:steps=0", "steps must be a whole number >= 1"),
    ("w:steps=2.5", "steps must be a whole number >= 1"),
    ("w:steps=x", "steps must be a whole number >= 1"),
    ("w:guidance=nan", "guidance must be a finite number"),
    ("w:guidance=-1", "guidance must be a finite number"),
    ("w:steps=2,steps=3", "steps given twice"),
    ("w:steps", None),  # no '=': part of the path
    ("w:", "nothing after ':'"),
    (":steps=2", "no pipeline folder"),
    ("w:steps=2,", "is not key=value"),
])
def test_parse_bad_pipeline_specs(spec, words):
    if words is None:
        assert parse_pipeline_spec(spec).path == spec
        return
    with pytest.raises(ValueError) as e:
        parse_pipeline_spec(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


# ---- the command --------------------------------------------------------------------------------------
def test_cli_benches_pipelines_and_prints_the_table(teacher, student, tmp_path, capsys):
    out = tmp_path / "rows.json"
    rc = main(["bench", "--pipeline", f"{teacher}:steps=2,guidance=3", "--pipeline", str(student),
               "--prompt", PROMPTS[0], "--num-frames", "5", "--height", "32", "--width", "32", "--repeats", "1",
               "--warmup", "0", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    rows = json.loads(out.read_text())["rows"]
    assert [r["nfe"] for r in rows] == [4, 2] and [r["model"] for r in rows] == [f"{teacher}:steps=2,guidance=3",
                                                                               str(student)]
    assert f"speedup of {student} vs {teacher}:steps=2,guidance=3:" in stdout
    assert "2 steps, guidance 1 (no CFG; fastlight_export.json)" in stdout
    assert stdout.rstrip().endswith(f"results written to {out}")


@pytest.fixture(scope="module")
def broken(student, tmp_path_factory):
    """Pipeline folders that are not usable: no VAE, a fastlight_export.json with bad steps."""
    root = tmp_path_factory.mktemp("broken")
    no_vae = _copy(student, root / "no_vae")
    shutil.rmtree(no_vae / "vae")
    _edit_json(no_vae / "model_index.json", vae=[None, None])
    no_te = _copy(student, root / "no_text_encoder_folder")
    shutil.rmtree(no_te / "text_encoder")
    bad_call = _copy(student, root / "bad_call")
    info = json.loads((bad_call / "fastlight_export.json").read_text())
    info["call"]["num_inference_steps"] = 0
    (bad_call / "fastlight_export.json").write_text(json.dumps(info))
    return {"no_vae": no_vae, "no_te": no_te, "bad_call": bad_call}


SMALL = ["--num-frames", "5", "--height", "32", "--width", "32", "--repeats", "1", "--warmup", "0"]


@pytest.mark.parametrize("case, argv, words", [
    ("model-and-pipeline", lambda t, s, b, tmp: ["--model", str(s), "--pipeline", str(t)], "cannot be mixed"),
    ("neither", lambda t, s, b, tmp: ["--repeats", "1"], "give --model SPEC"),
    ("not-a-pipeline-folder", lambda t, s, b, tmp: ["--pipeline", str(s / "transformer")],
     "not a diffusers pipeline folder (no model_index.json)"),
    ("missing-folder", lambda t, s, b, tmp: ["--pipeline", str(tmp / "nope")], "does not exist"),
    ("a-file", lambda t, s, b, tmp: ["--pipeline", str(s / "model_index.json")], "is a file"),
    ("unknown-option-key", lambda t, s, b, tmp: ["--pipeline", f"{t}:step=2"], "unknown key 'step'"),
    ("bad-steps", lambda t, s, b, tmp: ["--pipeline", f"{t}:steps=0"], "steps must be a whole number >= 1"),
    ("bad-steps-text", lambda t, s, b, tmp: ["--pipeline", f"{t}:steps=four"], "steps must be a whole number"),
    ("bad-guidance", lambda t, s, b, tmp: ["--pipeline", f"{t}:guidance=inf"], "guidance must be a finite number"),
    ("second-spec-bad", lambda t, s, b, tmp: ["--pipeline", str(t), "--pipeline", f"{s}:foo=1"], "unknown key 'foo'"),
    ("second-folder-bad", lambda t, s, b, tmp: ["--pipeline", str(t), "--pipeline", str(tmp / "nope")],
     "does not exist"),
    ("frames-not-1-plus-4k", lambda t, s, b, tmp: ["--pipeline", str(t), *SMALL, "--num-frames", "6"],
     "num_frames 6 is not 1 + 4k"),
    ("height-not-a-multiple", lambda t, s, b, tmp: ["--pipeline", str(t), *SMALL, "--height", "40"],
     "height 40 is not a multiple of 16"),
    ("repeats-0", lambda t, s, b, tmp: ["--pipeline", str(t), *SMALL, "--repeats", "0"], "repeats must be"),
    ("empty-prompt", lambda t, s, b, tmp: ["--pipeline", str(t), *SMALL, "--prompt", " "], "non-empty prompt"),
    ("batch-size-with-pipeline", lambda t, s, b, tmp: ["--pipeline", str(t), "--batch-size", "2"],
     "--batch-size applies to --model only"),
    ("pipeline-options-with-model", lambda t, s, b, tmp: ["--model", str(s), "--height", "32"],
     "--height: for --pipeline only"),
    ("no-vae", lambda t, s, b, tmp: ["--pipeline", str(b["no_vae"]), *SMALL], "has no vae"),
    ("text-encoder-folder-missing", lambda t, s, b, tmp: ["--pipeline", str(t), "--pipeline", str(b["no_te"])],
     "names text_encoder (UMT5EncoderModel) but"),
    ("bad-export-call", lambda t, s, b, tmp: ["--pipeline", str(b["bad_call"]), *SMALL],
     "call.num_inference_steps: steps must be a whole number >= 1, got 0"),
    ("bad-dtype", lambda t, s, b, tmp: ["--pipeline", str(t), "--dtype", "int8"], "invalid choice"),
    ("max-calls-0", lambda t, s, b, tmp: ["--pipeline", str(t), *SMALL, "--max-calls", "0"], "max_calls must be"),
    ("max-calls-with-model", lambda t, s, b, tmp: ["--model", str(s), "--max-calls", "2"],
     "--max-calls: for --pipeline only"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(teacher, student, broken, tmp_path, capsys, case, argv,
                                                         words):
    out = tmp_path / "out" / "rows.json"
    rc = main(["bench", *argv(teacher, student, broken, tmp_path), "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert rc == 2, (case, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], (case, err)
    assert not out.exists() and not (tmp_path / "out").exists()
