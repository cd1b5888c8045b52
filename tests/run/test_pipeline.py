"""`fastlight run`: every stage on a tiny 4-block Shapes model, skipping complete stages on re-run."""
from __future__ import annotations

import json

import pytest

from fastlight.cli import main
from fastlight.diffusion.spec import SamplerSpec
from fastlight.run.pipeline import ETA_PRIOR_S, RunConfig, eta_scale, resolve, split_overrides, stages
from tests.benchmark_scripts import load_benchmark

TINY = ["calib=2", "eval_cases=2", "teacher_steps=2", "bench_repeats=1", "metric_cases=2",
        "stage2.steps=2", "stage2.batch_size=2", "stage2.save_every=1", "stage2.warmup_steps=0",
        "stage3.steps=2", "stage3.batch_size=1", "stage3.critic_steps=1"]


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, shapes_model_factory):
    return shapes_model_factory(tmp_path_factory.mktemp("run") / "teacher", num_layers=4, perturb=0.05)


def _yaml(tmp_path, method="fastlightgen"):
    p = tmp_path / "recipe.yaml"
    p.write_text(f"method: {method}\npresets:\n  quick:\n    calib: 3\n    stage2: {{steps: 5, lr: 1.0e-4}}\n")
    return p


@pytest.fixture(scope="module")
def tiny_run(tiny_teacher, tmp_path_factory):
    """A finished tiny fastlightgen run: (run folder, the command's arguments)."""
    tmp = tmp_path_factory.mktemp("tiny_run")
    out = tmp / "run"
    args = ["run", str(_yaml(tmp)), f"out={out}", f"teacher={tiny_teacher}", *TINY]
    assert main(args) == 0
    return out, args


def test_fastlightgen_run_end_to_end_and_rerun_skips(tiny_run, capsys):
    out, args = tiny_run
    state = json.loads((out / "run.json").read_text())
    names = ["1_analyze", "2_plan", "3_stage2", "4_stage3", "evaluate", "bench", "report"]
    assert list(state["stages"]) == names and all(state["stages"][n]["done"] for n in names)
    assert (out / "3_stage2" / "model" / "plan.json").exists()
    assert SamplerSpec.load(out / "4_stage3" / "model").levels == [1.0, 0.75, 0.5, 0.25]
    # evaluate and bench ran the student with its own sampler, the teacher with the run's Euler steps
    ev = json.loads((out / "evaluate" / "fastlightgen_student_4steps" / "shapesbench.json").read_text())
    assert (ev["sampler"], ev["num_steps"], ev["nfe_per_video"]) == ("few_step", 4, 4)
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("euler", 2), ("few_step", 4)]
    assert (out / "report" / "report.md").exists() and (out / "bench" / "bench.json").exists()
    assert "ShapesBench" in state["headline"] and "faster end to end" in state["headline"]
    # scores with 95% intervals, the paired difference, and the case count said next to them
    ev_sum = state["stages"]["evaluate"]["summary"]
    assert ev_sum["split"] == "test" and ev_sum["num_cases"] == 2 and "difference" in ev_sum
    assert "paired, 95%, 2 test cases; fewer than the default 320" in state["headline"]
    assert f"[{ev_sum['student_interval']['low']:.3f}, " in state["headline"]
    # command-line values beat the preset; the preset's other keys still apply
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((out / "config.yaml").read_text())))
    assert cfg["calib"] == 2 and cfg["stage2"]["steps"] == 2 and cfg["stage2"]["lr"] == 1e-4
    # re-run: every stage is complete, nothing is redone (the stage markers keep their times)
    before = {n: state["stages"][n]["wall_s"] for n in names}
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and str(out / "report" / "report.md") in printed
    again = json.loads((out / "run.json").read_text())
    assert {n: again["stages"][n]["wall_s"] for n in names} == before
    # an interrupted stage (no marker) continues from its checkpoint: stage3's loop resumes at its last step
    (out / "4_stage3" / ".done.json").unlink()
    assert main([*args, "--only", "4_stage3"]) == 0
    assert "resuming" in capsys.readouterr().out
    # a different config in the same folder is refused
    assert main([*args[:-1], "stage3.critic_steps=2"]) == 2
    assert "different config" in capsys.readouterr().err


def test_dmd2_method_has_no_pruning_stages(tiny_teacher, tmp_path):
    cfg = resolve(RunConfig(method="dmd2"))
    assert [s.name for s in stages(cfg)] == ["4_stage3", "evaluate", "bench", "report"]
    assert [s.name for s in stages(resolve(RunConfig(method="vdmini")))][:3] == ["1_analyze", "2_plan", "3_stage2"]


@pytest.mark.parametrize("args, message", [
    (["method=distill"], "method must be one of"),
    (["prune_ratio=1.5"], "prune_ratio must be in (0, 1)"),
    (["stage4.steps=3"], "only stage2.KEY=VALUE"),
    (["stage2.stepz=3"], "unknown key(s) ['stepz']"),
    (["bogus=1"], "unknown key(s) ['bogus']"),
])
def test_run_bad_input_one_line(tiny_teacher, tmp_path, capsys, args, message):
    rc = main(["run", str(_yaml(tmp_path)), f"out={tmp_path / 'r'}", f"teacher={tiny_teacher}", *TINY, *args])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_split_overrides():
    plain, nested = split_overrides(["a=1", "stage2.steps=5", "stage3.timesteps=[1000,500]"])
    assert plain == ["a=1"] and nested == {"stage2": {"steps": 5}, "stage3": {"timesteps": [1000, 500]}}


def test_headline_states_intervals_and_case_count():
    from fastlight.run.pipeline import evaluation_note

    ev = {"num_cases": 320, "split": "test", "difference": {"estimate": 0.003, "low": -0.006, "high": 0.012}}
    assert evaluation_note(ev) == "student - teacher +0.003 [-0.006, +0.012] (paired, 95%, 320 test cases)"
    few = evaluation_note({**ev, "num_cases": 80})
    assert few.endswith("80 test cases; fewer than the default 320: intervals about 2.0x wider)")
    assert "no intervals" in evaluation_note({})  # an old run's summary: said, not hidden


@pytest.mark.slow
def test_ablation_study_on_a_finished_run(tiny_run):
    """benchmarks/ablations.py trains its variants into RUN/ablations and writes one table."""
    mod = load_benchmark("ablations")
    out, _ = tiny_run
    found = mod.main(["--run", str(out), "--only", "importance,alpha,beta2,teacher,joint,stage3", "--eval-cases", "2"])
    assert set(found) >= {"importance", "alpha", "beta2", "teacher", "joint", "stage3"}
    assert set(found["alpha"]["error_at_plan"]) == {"1.0", "0.5", "0.0", "untrained"}
    assert set(found["beta2"]["rows"]) == {"beta2=0.25 (run)", "beta2=0", "beta2=1"}
    assert found["joint"]["rows"]["step-only 3 steps, unpruned"]["speedup"] > 0
    assert found["joint"]["rows"]["step-only 4 steps, unpruned"]["direction"] is not None
    for name in ("dpp_alpha1", "dpp_alpha0", "dmd_beta2_0", "dmd_beta2_1", "dmd_unpruned_scores", "dmd2_3steps", "dmd2_4steps"):
        assert (out / "ablations" / name / "model" / "config.json").exists(), name
    assert SamplerSpec.load(out / "ablations" / "dmd2_3steps" / "model").levels == [1.0, 0.667, 0.333]
    # every verdict but importance's is a stated paired test; the scores carry their intervals
    for key in ("alpha", "beta2", "teacher", "joint", "stage3"):
        assert found[key]["tests"] and all("difference" in t and "holds" in t for t in found[key]["tests"]), key
        assert found[key]["reproduces"] == all(t["holds"] for t in found[key]["tests"])
    assert found["teacher"]["pruned"]["interval"]["num_cases"] == 2
    verdicts = (out / "ablations" / "ablations.md").read_text()
    assert "paired 95% intervals" in verdicts and ("holds" in verdicts or "fails" in verdicts)
    md = (out / "ablations" / "ablations.md").read_text()
    assert md.count("\n| ") == 6 and "reproduces?" in md


def test_stage2_alpha_comes_from_the_recipe_yaml_not_from_the_pipeline():
    """alpha = 0.5 is a measured choice for the Shapes teacher: it lives in configs/shapes/fastlightgen.yaml;
    the pipeline itself passes nothing, so another family gets the recipe's (the paper's) default."""
    from fastlight.config import load_config
    from fastlight.run.pipeline import Run, stage2_config

    shapes = resolve(load_config(RunConfig, "configs/shapes/fastlightgen.yaml", []))
    assert stage2_config(Run(shapes))[1].alpha == 0.5
    assert stage2_config(Run(resolve(RunConfig(method="fastlightgen"))))[1].alpha == 1.0


def test_eta_scale_trusts_minutes_not_seconds():
    assert eta_scale(0.0, 0.0) == 1.0  # nothing finished: the estimates as they are
    # a first stage of 3 s estimated at 80 s barely moves a run of minutes (it once read "~1 min left" of 10)
    assert 0.6 < eta_scale(3.0, 80.0) < 1.0
    # many minutes of evidence: close to the measured ratio
    assert eta_scale(1200.0, 4800.0) == pytest.approx(0.25, abs=0.02)
    assert eta_scale(4800.0, 1200.0) == pytest.approx(4.0, rel=0.1)
    assert eta_scale(ETA_PRIOR_S, 0.0) == 2.0  # a stage with no estimate counts what it took
