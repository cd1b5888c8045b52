"""The ablation study's verdicts (benchmarks/ablations.py) are paired tests at the 95% level."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from fastlight.shapes import bench as sb
from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def ablations():
    return load_benchmark("ablations")


def _result(direction_ok, n=64, seed=0):
    """A ShapesBench-like result on `n` cases of one object each, perfect but for direction."""
    ok = np.asarray(direction_ok, dtype=float)
    per_case = {"num_objects": [1.0] * n, "direction_ok": ok.tolist(), "colour_kept": [1.0] * n,
                "shape_ok": [1.0] * n, "num_moving": [1.0] * n, "speed_err": [0.0] * n, "count_ok": [1.0] * n,
                "sharpness": [1.0] * n, "ghost_free": [1.0] * n}
    arrays = {k: np.asarray(v) for k, v in per_case.items()}
    score = float(sb.score_values(arrays))
    return {"score": score, "per_case": per_case, "case_seed": 1, "split": "test", "seed": seed, "num_cases": n,
            "intervals": sb.intervals(per_case), "parts": {}, "metrics": {}}


def test_a_clear_win_holds_and_a_tie_does_not(ablations):
    rng = np.random.default_rng(0)
    good = _result(np.ones(64))
    bad = _result(rng.random(64) < 0.6)
    assert ablations.beats(good, bad)["holds"]
    assert not ablations.beats(bad, good)["holds"]
    assert not ablations.beats(good, good)["holds"]  # equal is not better
    # one case in 64 is within the noise: the old bare `>` said "reproduces", the paired test does not
    almost = _result(np.r_[np.ones(63), 0.0])
    assert good["score"] > almost["score"] and not ablations.beats(good, almost)["holds"]


def test_margin_and_verdict_need_every_test(ablations):
    good = _result(np.ones(64))
    slightly = _result(np.r_[np.ones(56), np.zeros(8)])  # score 0.0375 lower: a drop, not a sharp one
    assert ablations.beats(good, slightly)["holds"]
    assert not ablations.beats(good, slightly, margin=ablations.SHARP_DROP)["holds"]
    v = ablations.verdict([ablations.beats(good, slightly), ablations.beats(good, good)])
    assert not v["reproduces"] and len(v["tests"]) == 2
    with pytest.raises(ValueError, match="same cases and noise"):
        ablations.beats(good, _result(np.ones(64), seed=1))


def test_lower_error_is_paired_over_the_same_samples(ablations):
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 0.01, 64)  # per-sample difficulty shared by both models
    assert ablations.lower_error(base * 0.9, base)["holds"]
    assert not ablations.lower_error(base, base * 0.9)["holds"]


def test_importance_verdict_uses_the_standard_errors(ablations):
    rows = [{"index": i, "score": 0.01, "stderr": 0.001} for i in range(16)]
    rows[0]["score"], rows[15]["score"] = 0.2, 0.03
    assert ablations.importance_verdict(rows)["reproduces"]
    rows[15]["stderr"] = 0.01  # 0.03 - 1.96 * 0.01 < 2 * 0.01: not separated from the middle
    assert not ablations.importance_verdict(rows)["reproduces"]


def test_table_states_the_test(ablations):
    good, bad = _result(np.ones(64)), _result(np.r_[np.ones(40), np.zeros(24)])
    found = {"teacher": {"pruned": ablations.motion(good), "unpruned": ablations.motion(bad),
                         **ablations.verdict([ablations.beats(good, bad, label="pruned - unpruned")])}}
    md = ablations.table(found)
    assert "paired 95% intervals" in md and "pruned - unpruned = +" in md and "holds" in md
    assert "[" in md.splitlines()[-1].split("|")[3]  # the scores carry their intervals


def test_a_study_trains_its_variants_from_the_runs_own_stage_configs(ablations, tmp_path, monkeypatch):
    """Study.stage2 / stage3 take the run's recipe settings (fastlight.run.pipeline.stage2_config /
    stage3_config) with the variant's one change, into the study's folder."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({
        "out": str(run), "method": "fastlightgen", "teacher": "shapes-teacher", "seed": 3, "threads": 1,
        "stage2": {"p": 0.25, "lr": 1e-4}, "stage3": {"timesteps": [1000, 500], "guide_beta2": 0.25}}))
    trained = []
    monkeypatch.setattr(ablations, "_train", lambda recipe, cfg: trained.append((recipe, cfg)) or Path(cfg.out))
    study = ablations.Study(run, eval_cases=8)
    study.stage2("dpp_alpha1", alpha=1.0)
    study.stage2("ratio0.5/stage2", plan=str(tmp_path / "plan.json"))
    study.stage3("dmd_beta2_0", guide_beta2=0.0)
    study.stage3("dmd2_2steps", recipe="dmd2", teacher="shapes-teacher")
    (r1, a1), (r2, ratio), (r3, b0), (r4, dmd2) = trained
    assert (r1, r2, r3, r4) == ("dpp", "dpp", "fastlightgen", "dmd2")
    assert a1.alpha == 1.0 and ratio.alpha == 0.5  # alpha 0.5 where neither the run nor the variant sets it
    assert a1.p == ratio.p == 0.25 and a1.lr == 1e-4 and a1.seed == 3 and a1.threads == 1  # the run's settings
    assert a1.plan == str(run / "2_plan" / "plan.json") and ratio.plan == str(tmp_path / "plan.json")
    assert a1.out == str(run / "ablations" / "dpp_alpha1")
    assert b0.guide_beta2 == 0.0 and list(b0.timesteps) == [1000, 500] and b0.teacher == str(run / "3_stage2" / "model")
    assert dmd2.teacher == "shapes-teacher" and dmd2.out == str(run / "ablations" / "dmd2_2steps")
