"""The ablation study's verdicts (benchmarks/ablations.py) are paired tests at the 95% level."""
import numpy as np
import pytest

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
