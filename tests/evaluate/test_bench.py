"""fastlight.evaluate.bench: spec parsing, the model's own sampler by default, counted NFE, side-by-side
timing rows (end to end and denoise only), JSON. Tiny 2-block Shapes model, few steps, CPU; never
asserts on timings."""
import json

import pytest
import torch

from fastlight.diffusion import sampling
from fastlight.evaluate.timing import resolve_device
from fastlight.evaluate.bench import ModelSpec, bench, bench_callables, bench_models, parse_spec, phase

ROW_KEYS = {"model", "path", "sampler", "steps", "cfg", "sampler_spec", "skip", "timesteps", "shift", "batch_size", "nfe",
            "forwards", "dit_params", "time_s", "text_s", "denoise_s", "decode_s", "peak_mem_mb", "mem_method", "speedup",
            "denoise_speedup", "device"}


# ---- specs ------------------------------------------------------------------------------------
def test_parse_defaults_and_options():
    s = parse_spec("shapes-teacher")  # no options: the model's own sampler, nothing overridden
    assert (s.path, s.sampler, s.num_steps, s.guidance, s.shift, s.timesteps, s.skip) == \
        ("shapes-teacher", None, None, None, None, None, ())
    s = parse_spec("runs/student:steps=4,cfg=1,sampler=few_step,skip=3+1+2")
    assert (s.path, s.sampler, s.num_steps, s.guidance, s.skip) == ("runs/student", "few_step", 4, 1.0, (1, 2, 3))
    assert s.label == "runs/student:steps=4,cfg=1,sampler=few_step,skip=3+1+2"
    s = parse_spec("m:timesteps=1000+757+522,guidance=2")
    assert (s.sampler, s.timesteps, s.guidance) == (None, (1000.0, 757.0, 522.0), 2.0)
    assert parse_spec("m:steps=8,shift=5").shift == 5.0
    assert parse_spec(r"C:\models\teacher").path == r"C:\models\teacher"  # a ':' without '=' is part of the path


@pytest.mark.parametrize("spec, words", [
    ("m:foo=1", "unknown key 'foo'"),
    ("m:steps=abc", "steps must be a whole number"),
    ("m:steps=2.5", "steps must be a whole number"),
    ("m:steps=0", "steps must be >= 1"),
    ("m:cfg=x", "guidance must be a number"),
    ("m:guidance=nan", "guidance must be finite"),
    ("m:guidance=2,cfg=3", "guidance given twice"),
    ("m:sampler=few_step,shift=3", "shift only applies"),
    ("m:sampler=ddim", "sampler must be euler or few_step"),
    ("m:skip=1+a", "skip must be a whole number"),
    ("m:timesteps=500+750", "strictly decreasing"),
    ("m:sampler=euler,timesteps=1000+500", "timesteps only apply"),
    ("m:steps=3,timesteps=1000+500", "steps=3 but 2 timesteps"),
    ("m:steps=4,steps=5", "given twice"),
    ("m:steps", "not key=value"),
    (":steps=4", "no model path"),
    ("m:", "nothing after ':'"),
    ("", "empty model spec"),
])
def test_parse_bad_specs(spec, words):
    with pytest.raises(ValueError) as e:
        parse_spec(spec)
    msg = str(e.value)
    assert words in msg and "\n" not in msg


# ---- bench_callables ------------------------------------------------------------------------
def test_bench_callables_interleaves_and_splits_phases():
    order = []

    def make(name):
        def fn():
            order.append(name)
            with phase("text"):
                pass
            with phase("denoise"):
                torch.ones(64, 64) @ torch.ones(64, 64)
        return fn

    res = bench_callables({"a": make("a"), "b": make("b")}, repeats=3, warmup=1, device="cpu", progress=False)
    assert order == ["a", "b"] * 4  # warm-up round, then 3 timed rounds, ABAB
    assert list(res) == ["a", "b"] and res["a"]["speedup"] == 1.0
    for r in res.values():
        t = r["time_s"]
        assert len(t["runs"]) == 3 and t["min"] <= t["median"] <= t["max"]
        assert set(r["phases_s"]) == {"text", "denoise"}
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] > 0
    with phase("text"):  # outside a bench: a no-op
        pass
    with pytest.raises(ValueError, match="repeats"):
        bench_callables({"a": make("a")}, repeats=0, progress=False)
    with pytest.raises(ValueError, match="nothing to bench"):
        bench_callables({}, progress=False)


def test_balanced_rounds_call_cheap_fns_more_often(monkeypatch):
    """max_calls > 1: from the warm-up times (a fake clock: a is 20 units, b 1, c 8), b runs 5 times per round
    (floor(20 / 2 / 1) = 10, capped), c once (within 2.5x of a); every call timed; max_calls 1 (the default) keeps
    one call per round."""
    from fastlight.evaluate import timing

    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    order = []

    def make(name, cost):
        def fn():
            order.append(name)
            now[0] += cost
        return fn

    fns = {"a": make("a", 20.0), "b": make("b", 1.0), "c": make("c", 8.0)}
    res = bench_callables(fns, repeats=2, warmup=1, device="cpu", progress=False, max_calls=5)
    assert order == ["a", "b", "c"] + (["a"] + ["b"] * 5 + ["c"]) * 2
    assert [res[n]["calls_per_round"] for n in "abc"] == [1, 5, 1]
    assert res["b"]["time_s"]["runs"] == [1.0] * 10 and res["b"]["speedup"] == 20.0
    order.clear()
    res = bench_callables(fns, repeats=2, warmup=1, device="cpu", progress=False)
    assert order == ["a", "b", "c"] * 3 and res["b"]["calls_per_round"] == 1
    assert timing.balanced_calls({"a": 10.0, "b": 2.0, "c": 0.0}, 4) == {"a": 1, "b": 2, "c": 4}
    with pytest.raises(ValueError, match="max_calls"):
        bench_callables(fns, max_calls=0, progress=False)


# ---- models end to end (the Shapes pipeline plug-in) ----------------------------------------------
def test_bench_rows_nfe_and_speedup(tiny_shapes_model):
    m = str(tiny_shapes_model)
    specs = [f"{m}:steps=4,cfg=4", f"{m}:steps=2,guidance=1", f"{m}:sampler=few_step,timesteps=1000+500",
             f"{m}:sampler=few_step,steps=2,guidance=3,skip=1"]
    rows = bench(specs, batch_size=2, repeats=2, warmup=1, device="cpu", progress=False)
    assert [r["model"] for r in rows] == specs
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert set(r["time_s"]) == {"median", "min", "max", "runs"} and len(r["time_s"]["runs"]) == 2
        assert r["time_s"]["min"] <= r["time_s"]["median"] <= r["time_s"]["max"]
        assert all(r[k] >= 0 for k in ("text_s", "denoise_s", "decode_s"))
        assert r["denoise_s"] <= r["time_s"]["max"]  # denoise only is a part of end to end
        assert r["speedup"] > 0 and r["denoise_speedup"] > 0
    assert rows[0]["speedup"] == 1.0 and rows[0]["denoise_speedup"] == 1.0
    assert [r["nfe"] for r in rows] == [8, 2, 2, 4]  # euler guidance 4: 2 per step; guidance 1: 1; few_step
    assert [r["forwards"] for r in rows] == [4, 2, 2, 2]  # cond + uncond batched in one forward
    assert [r["sampler"] for r in rows] == ["euler", "euler", "few_step", "few_step"]
    assert rows[3]["timesteps"] == [1000.0, 500.0] and rows[3]["cfg"] == 3.0
    full = rows[0]["dit_params"]
    assert rows[2]["dit_params"] == full and rows[3]["dit_params"] < full
    assert rows[0]["shift"] == 3.0 and rows[2]["shift"] is None


def test_bench_uses_the_models_own_sampler_by_default(tiny_shapes_model, tmp_path, capsys):
    """A few-step student is timed with its sampler.json (not 50 Euler steps + CFG 4); an explicit
    override is used and reported; a partial override of the student is refused."""
    import shutil

    from fastlight.diffusion.spec import SamplerSpec

    student = tmp_path / "student"
    shutil.copytree(tiny_shapes_model, student)
    SamplerSpec.few_step((1000, 500)).save(student)
    rows = bench([str(student), f"{student}:sampler=euler,steps=3,guidance=4"], repeats=1, warmup=0, device="cpu")
    out = capsys.readouterr().out
    assert (rows[0]["sampler"], rows[0]["steps"], rows[0]["nfe"]) == ("few_step", 2, 2)
    assert (rows[1]["sampler"], rows[1]["steps"], rows[1]["nfe"]) == ("euler", 3, 6)
    assert "the model's own" in out and "explicit override" in out
    with pytest.raises(ValueError, match="few-step student") as e:
        bench([f"{student}:steps=8"], repeats=1, warmup=0, device="cpu", progress=False)
    assert "\n" not in str(e.value)


def test_nfe_counts_samples_not_forwards(tiny_shapes_model, monkeypatch):
    # cond and uncond in two forwards (unstackable texts) must still count 2 per step
    monkeypatch.setattr(sampling, "_stackable", lambda a, b: False)
    rows = bench([f"{tiny_shapes_model}:steps=2,cfg=4"], repeats=1, warmup=0, device="cpu", progress=False)
    assert rows[0]["nfe"] == 4 and rows[0]["forwards"] == 4


def test_nfe_mismatch_is_caught(tiny_shapes_model, monkeypatch):
    real = sampling.euler_sample

    def extra_forward(model, noise, cond, *a, **k):
        with torch.inference_mode():
            model(noise, torch.ones(noise.shape[0]), cond)
        return real(model, noise, cond, *a, **k)

    monkeypatch.setitem(sampling.SAMPLERS, "euler", extra_forward)
    with pytest.raises(RuntimeError, match="counted 3 network evaluations per video, expected 2"):
        bench([f"{tiny_shapes_model}:steps=2,cfg=1"], repeats=1, warmup=0, device="cpu", progress=False)


def test_bench_rejects_bad_input(tiny_shapes_model, tmp_path):
    with pytest.raises(ValueError, match="skip ids"):
        bench([f"{tiny_shapes_model}:steps=1,skip=7"], repeats=1, warmup=0, device="cpu", progress=False)
    with pytest.raises(ValueError, match="batch size"):
        bench([str(tiny_shapes_model)], batch_size=0, progress=False)
    from fastlight.shapes.preset import SHAPES_TEACHER_CONFIG
    from fastlight.models.wan import WanDenoiser

    cfg = dict(SHAPES_TEACHER_CONFIG, num_layers=1, attention_head_dim=8, ffn_dim=16, freq_dim=16)
    WanDenoiser.from_config(**cfg).save(tmp_path / "wan", {"kind": "custom"})  # no Shapes world
    with pytest.raises(ValueError, match="no registered pipeline") as e:
        bench([str(tmp_path / "wan") + ":steps=1"], repeats=1, warmup=0, device="cpu", progress=False)
    assert "\n" not in str(e.value)


def test_bench_models_writes_json_and_prints_nothing_of_its_own(tiny_shapes_model, tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    specs = [f"{tiny_shapes_model}:steps=2,cfg=4", f"{tiny_shapes_model}:steps=1,cfg=1"]
    rows = bench_models(specs, batch_size=1, repeats=1, warmup=0, out_json=str(out), device="cpu", progress=False)
    data = json.loads(out.read_text())
    assert data["rows"] == json.loads(json.dumps(rows))
    assert data["batch_size"] == 1 and data["repeats"] == 1 and data["device"] == "cpu"
    assert [r["nfe"] for r in data["rows"]] == [4, 1]
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # no temp file left
    assert capsys.readouterr().out == ""  # the table is the command's (fastlight/commands/bench.py)
    with pytest.raises(ValueError, match="unknown key"):
        bench_models([f"{tiny_shapes_model}:stepz=2"], out_json=str(out))


def test_model_spec_object_accepted(tiny_shapes_model):
    spec = ModelSpec(str(tiny_shapes_model), num_steps=1, guidance=1.0)
    rows = bench([spec], repeats=1, warmup=0, device="cpu", progress=False)
    assert rows[0]["nfe"] == 1 and rows[0]["speedup"] == 1.0
    assert resolve_device(None).type in ("cpu", "cuda")


def test_cli_bench_writes_json_and_prints_the_table(tiny_shapes_model, tmp_path, capsys):
    import json

    from fastlight.cli import main

    out = tmp_path / "b.json"
    rc = main(["bench", "--model", f"{tiny_shapes_model}:steps=2,cfg=4", "--model", f"{tiny_shapes_model}:steps=1,cfg=1",
               "--repeats", "1", "--warmup", "0", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert rc == 0, err
    rows = json.loads(out.read_text())["rows"]
    assert [r["nfe"] for r in rows] == [4, 1] and rows[0]["speedup"] == 1.0
    assert "speedup of" in printed and "NFE 4 -> 1" in printed and "end to end" in printed and "denoise only" in printed
    assert f"results written to {out}" in printed
    rc = main(["bench", "--model", f"{tiny_shapes_model}:stepz=2"])
    assert rc == 2 and "stepz" in capsys.readouterr().err
