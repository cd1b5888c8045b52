"""benchmarks/paper_table.py: the paper's rows on a Shapes pipeline run, scored by the oracle with intervals,
and the seven findings as confirm / refute / cannot tell from paired intervals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastlight.shapes.text_model  # noqa: F401 - diffusers takes the phrase encoder's module from sys.modules
from fastlight.cli import main
from fastlight.data import video as vio
from fastlight.shapes import bench as sb
from fastlight.shapes import world as shapes
from fastlight.shapes.latent_data import clip_at, write_shapes_shards
from fastlight.shapes.pipeline_folder import latent_transformer, write_shapes_pipeline
from tests.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
WAN22 = ROOT / "configs" / "wan" / "wan22_ti2v_5b.yaml"


@pytest.fixture(scope="module")
def pt():
    return load_benchmark("paper_table")


# ---- the verdict logic on made-up intervals ------------------------------------------------------------
def _test(low, high, margin=0.0):
    return {"difference": {"estimate": (low + high) / 2, "low": low, "high": high}, "margin": margin,
            "holds": low > margin}


@pytest.mark.parametrize("tests, word", [
    ([_test(0.01, 0.03)], "confirmed"),
    ([_test(0.01, 0.03), _test(0.002, 0.02)], "confirmed"),
    ([_test(-0.03, -0.01)], "refuted"),
    ([_test(0.01, 0.03), _test(-0.05, -0.001)], "refuted"),  # one comparison reversed refutes the finding
    ([_test(-0.01, 0.02)], "cannot tell"),
    ([_test(0.01, 0.03), _test(-0.01, 0.02)], "cannot tell"),
    ([_test(0.02, 0.04, margin=0.05)], "refuted"),  # wholly below the stated margin
    ([_test(0.03, 0.08, margin=0.05)], "cannot tell"),
    ([], "cannot tell"),
    ([_test(-2e-9, -1e-9)], "cannot tell"),  # float rounding of two models that sample the same videos
    ([_test(1e-9, 2e-9)], "cannot tell"),
])
def test_verdict_follows_the_intervals(pt, tests, word):
    assert pt.verdict3(tests) == word


def _blocks(scores, stderr=0.001):
    return [{"index": i, "score": s, "stderr": stderr} for i, s in enumerate(scores)]


def test_importance_verdict(pt):
    assert pt.importance_verdict3(_blocks([0.5, 0.1, 0.1, 0.1, 0.1, 0.6]))["verdict"] == "confirmed"
    refuted = pt.importance_verdict3(_blocks([0.5, 0.1, 0.1, 0.1, 0.1, 0.05]))
    assert refuted["verdict"] == "refuted" and refuted["below"] == [5]
    assert pt.importance_verdict3(_blocks([0.5, 0.1, 0.1, 0.1, 0.1, 0.19], stderr=0.02))["verdict"] == "cannot tell"


def _result(direction_ok, seed=0):
    """A ShapesBench-like result on len(direction_ok) one-object cases, perfect but for direction."""
    n = len(direction_ok)
    per_case = {"num_objects": [1.0] * n, "direction_ok": [float(x) for x in direction_ok], "colour_kept": [1.0] * n,
                "shape_ok": [1.0] * n, "num_moving": [1.0] * n, "speed_err": [0.0] * n, "count_ok": [1.0] * n,
                "sharpness": [1.0] * n, "ghost_free": [1.0] * n}
    score = float(sb.score_values({k: np.asarray(v) for k, v in per_case.items()}))
    return {"score": score, "per_case": per_case, "case_seed": 1, "split": "test", "seed": seed, "num_cases": n}


def test_findings_read_the_paired_intervals(pt):
    rng = np.random.default_rng(0)
    good, bad = (rng.random(64) < 0.95), (rng.random(64) < 0.3)
    scores = {pt.beta2_row(0.25): _result(good), pt.beta2_row(0.0): _result(bad), pt.beta2_row(1.0): _result(good),
              pt.ROW_FLG: _result(bad), pt.ROW_DMD2: _result(bad), pt.ROW_DMD2_EQUAL: _result(good),
              pt.ROW_STAGE2: _result(bad)}
    f = pt.findings(scores, _blocks([0.5, 0.1, 0.1, 0.1, 0.1, 0.6]), 0.25)
    assert f["beta2"]["verdict"] == "cannot tell"  # beats 0 (holds), ties 1 (identical: [0, 0])
    assert [t["holds"] for t in f["beta2"]["tests"]] == [True, False]
    # the finding is the equal-cost test (3 unpruned steps); the 4-step one is reported beside it, its own verdict
    assert f["joint"]["verdict"] == "refuted" and f["joint"]["tests"][0]["difference"]["high"] < 0
    assert f["joint"]["tests"][0]["test"] == "FastLightGen - step-only DMD2 at 3 steps"
    assert f["joint"]["four_steps"]["verdict"] == "cannot tell"  # the same videos as the student: a tie
    assert f["stage3"]["verdict"] == "cannot tell"  # the same videos: a zero difference
    assert f["importance"]["verdict"] == "confirmed"
    # without their rows (--skip) the costly findings cannot tell, and say why
    assert all(f[k]["verdict"] == "cannot tell" and "--skip" in f[k]["why"] for k in ("alpha", "teacher", "ratio"))
    assert set(f) == set(pt.ablations.PAPER)


def test_alpha_teacher_and_ratio_findings(pt):
    rng = np.random.default_rng(1)
    good, bad = (rng.random(64) < 0.95), (rng.random(64) < 0.3)
    scores = {pt.beta2_row(b): _result(good) for b in pt.BETA2S}
    scores.update({pt.ROW_FLG: _result(good), pt.ROW_DMD2: _result(good), pt.ROW_DMD2_EQUAL: _result(good),
                   pt.ROW_STAGE2: _result(good),
                   pt.alpha_row(1.0): _result(good), pt.alpha_row(0.5): _result(bad), pt.alpha_row(0.0): _result(bad),
                   pt.ROW_UNPRUNED: _result(bad), pt.ratio_row(0.5): _result(bad), pt.ratio_row(0.7): _result(bad)})
    f = pt.findings(scores, None, 0.25, run_alpha=0.5)
    assert f["alpha"]["verdict"] == "confirmed" and [t["test"] for t in f["alpha"]["tests"]] == ["alpha 1 - 0.5",
                                                                                               "alpha 1 - 0"]
    assert f["alpha"]["run_alpha"] == 0.5
    assert "frozen_target" not in f["alpha"]  # not measured: not reported
    scores[pt.ROW_ALPHA_FROZEN] = _result(bad)
    f = pt.findings(scores, None, 0.25, run_alpha=0.5)
    assert f["alpha"]["verdict"] == "confirmed"  # the finding is the paper's (shared target) test
    assert f["alpha"]["frozen_target"]["verdict"] == "cannot tell"  # identical to alpha 0.5 and 0: ties
    scores[pt.ROW_ALPHA_FROZEN] = _result(good)
    doc = pt.findings(scores, None, 0.25, run_alpha=0.5)
    assert doc["alpha"]["frozen_target"]["verdict"] == "confirmed"
    assert f["teacher"]["verdict"] == "confirmed"
    ratio = f["ratio"]["tests"][0]
    assert ratio["margin"] == pt.SHARP_DROP and f["ratio"]["verdict"] == "confirmed"  # a drop of ~0.3 > 0.05
    scores[pt.ratio_row(0.5)] = scores[pt.ROW_FLG]  # no drop at all: wholly below the 0.05 margin
    scores[pt.alpha_row(0.0)] = _result(rng.random(64) < 0.95)  # as good as alpha 1, other cases fail: cannot tell
    f = pt.findings(scores, None, 0.25, run_alpha=0.5)
    assert f["ratio"]["verdict"] == "refuted" and f["alpha"]["verdict"] == "cannot tell"
    assert f["importance"]["verdict"] == "cannot tell" and f["importance"]["why"]


# ---- end to end on a tiny random-weight Shapes pipeline run -------------------------------------------
def _eval_inputs(folder: Path, world, n: int = 2) -> tuple[Path, Path]:
    """Prompts and first frames for the run's bench stage (calibration stream; the oracle brings its own cases)."""
    clips = [clip_at(0, "calibration", k, world) for k in range(n)]
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(c.prompt for c in clips) + "\n")
    frames = folder / "frames"
    frames.mkdir()
    for i, c in enumerate(clips):
        Image.fromarray(vio.to_uint8_frames(shapes.render(c, world)[:, :1])[0]).save(frames / f"{i}.png")
    return prompts, frames


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper_run")
    world = shapes.world_from_name("v2", num_frames=9)
    pipe = write_shapes_pipeline(base / "pipe", transformer=latent_transformer(0, num_layers=4), world="v2")
    shards = base / "shards"
    write_shapes_shards(shards, pipe, 8, world=world, shard_size=8, batch_size=4, progress=False)
    prompts, frames = _eval_inputs(base, world)
    out = base / "run"
    args = ["run", str(WAN22), "preset=tiny", f"teacher={pipe}", f"data={shards}", "synthesize={}", f"out={out}",
            f"eval.prompts={prompts}", f"eval.images={frames}", "eval_cases=2", "decoder=none"]
    assert main([*args, "--only", "1_analyze,2_plan,3_stage2,4_stage3"]) == 0
    return pipe, out


@pytest.mark.slow
def test_paper_table_end_to_end(pt, v2_run, monkeypatch, capsys):
    pipe, out = v2_run
    monkeypatch.chdir(ROOT)
    args = ["--run", str(out), "--eval-cases", "2", "--teacher-steps", "6", "--ratios", "0.3,0.4"]
    doc = pt.main(args)  # 4 blocks, the ends kept: 42% is the most a plan removes (the run's removes 21%)
    table = out / "paper_table"
    assert json.loads((table / "paper_table.json").read_text())["rows"].keys() == doc["rows"].keys()
    assert list(doc["rows"]) == ["teacher, 6 Euler steps", pt.ROW_TEACHER4, pt.ROW_STAGE2, pt.ROW_DMD2,
                                 pt.ROW_DMD2_EQUAL, pt.ROW_FLG,
                                 pt.beta2_row(0), pt.beta2_row(0.25), pt.beta2_row(1), pt.alpha_row(0),
                                 pt.alpha_row(0.5), pt.alpha_row(1), pt.ROW_ALPHA_FROZEN, pt.ROW_UNPRUNED,
                                 pt.ratio_row(0.3),
                                 pt.ratio_row(0.4)]
    assert doc["rows"][pt.beta2_row(0.25)]["same_as"] == pt.ROW_FLG  # the run's own beta2 (0.25): its student
    assert doc["rows"][pt.alpha_row(1)]["same_as"] == pt.ROW_FLG  # the recipe's Stage II alpha (1)
    removed = {n: r.get("removed_fraction") for n, r in doc["rows"].items()}
    assert removed[pt.ROW_FLG] < removed[pt.ratio_row(0.3)] <= removed[pt.ratio_row(0.4)]
    assert removed[pt.ratio_row(0.3)] >= 0.3 and removed[pt.ratio_row(0.4)] >= 0.4  # a plan removes AT LEAST
    assert json.loads((table / "ratio_0.4" / "plan.json").read_text())["prune_ratio"] == 0.4
    assert doc["findings"]["ratio"]["tests"][0]["test"] == "the run's plan - the 0.3 plan"
    assert "alpha: 0.0" in (table / "alpha_0" / "stage2" / "config.yaml").read_text()
    assert not (table / "alpha_1").exists()
    frozen = (table / "alpha_1_frozen" / "stage2" / "config.yaml").read_text()
    assert "alpha: 1.0" in frozen and "target: teacher" in frozen
    assert "target: shared" in (table / "alpha_0.5" / "stage2" / "config.yaml").read_text()
    assert [t["test"] for t in doc["findings"]["alpha"]["frozen_target"]["tests"]] == [
        "alpha 1 (frozen target) - 0.5", "alpha 1 (frozen target) - 0"]
    assert "score_init: unpruned" in (table / "unpruned_scores" / "config.yaml").read_text()
    assert doc["oracle"]["oracle"] == "check_clip_v2" and doc["oracle"]["num_cases"] == 2
    for name, row in doc["rows"].items():
        iv = row["interval"]
        assert iv["low"] <= row["score"] <= iv["high"] and iv["num_cases"] == 2, name
        assert (row["minus_reference"] is None) == name.startswith("teacher, 6")
    for key, f in doc["findings"].items():  # each verdict is the one its intervals give
        assert f["verdict"] == (pt.importance_verdict3(json.loads((out / "1_analyze" / "importance.json").read_text())
                                                       ["blocks"])["verdict"] if key == "importance"
                                else pt.verdict3(f["tests"])), key
    assert doc["rows"][pt.ROW_DMD2_EQUAL]["sampler"]["timesteps"] == [1000, 667, 333]
    assert doc["rows"][pt.ROW_DMD2]["sampler"]["timesteps"] == [1000, 750, 500, 250]
    for variant in ("dmd2_4steps", "dmd2_3steps", "beta2_0", "beta2_1", "unpruned_scores", "alpha_0.5/stage3", "ratio_0.3/stage3"):
        # trained with the run's Stage III settings
        cfg = (table / variant / "config.yaml").read_text()
        assert "steps: 2" in cfg, variant
    md = (table / "paper_table.md").read_text()
    assert md.count("| FastLightGen beta2") == 3 and "| beta2 |" in md and "not measured" not in md
    assert "% removed" in md and "| ratio |" in md and "with the frozen target (" in md
    assert "; at 4 steps each (" in md
    # resumable: a second call trains nothing and reuses the evaluation
    capsys.readouterr()
    again = pt.main(args)
    assert "reusing" in capsys.readouterr().out and again["rows"] == doc["rows"]


@pytest.mark.slow
def test_skip_leaves_the_costly_findings_out(pt, v2_run, monkeypatch):
    pipe, out = v2_run
    monkeypatch.chdir(ROOT)
    doc = pt.main(["--run", str(out), "--eval-cases", "2", "--teacher-steps", "6", "--skip", "alpha,ratio"])
    assert list(doc["rows"])[-1] == pt.ROW_UNPRUNED
    assert pt.ROW_UNPRUNED in doc["rows"] and not any("alpha =" in n or "prune_ratio" in n for n in doc["rows"])
    assert "--skip alpha" in doc["findings"]["alpha"]["why"] and "--skip ratio" in doc["findings"]["ratio"]["why"]
    with pytest.raises(pt.InputError, match="--skip beta2: unknown finding"):
        pt.main(["--run", str(out), "--skip", "beta2"])


def test_a_folder_that_is_not_a_run_is_one_line(pt, tmp_path):
    from fastlight.errors import MissingFileError

    with pytest.raises(MissingFileError, match="no config.yaml"):
        pt.main(["--run", str(tmp_path)])
