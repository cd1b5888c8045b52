"""`fastlight search`: (steps, prune ratio) pairs of an elastic model, Pareto front, recommendation."""
from __future__ import annotations

import json

import pytest

from fastlight.cli import main
from fastlight.evaluate.metrics import pareto_front
from fastlight.run.search import recommend


def test_pareto_and_recommend():
    pts = [(10, 0.5), (20, 0.4), (20, 0.7), (40, 0.7), (50, 0.9)]
    assert pareto_front(pts, maximize_x=False) == [0, 2, 4]
    rows = [{"pred_ms": c, "score": q} for c, q in pts]
    assert recommend(rows, 45) == rows[2]  # 0.7 at 20 ms beats 0.7 at 40 ms
    assert recommend(rows, 60) == rows[4]
    assert recommend(rows, 5) is None


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shapes_model_factory):
    from fastlight.analyze.importance import compute_importance

    root = tmp_path_factory.mktemp("search")
    model = shapes_model_factory(root / "model", num_layers=4, perturb=0.05)
    compute_importance(str(model), 2, str(root / "analyze"), ("elbo",), progress=False, data_free=False)
    return model, root / "analyze" / "importance.json"


def test_search_writes_front_plot_and_pick(tiny_run, tmp_path, capsys):
    model, imp = tiny_run
    args = ["search", str(model), "--importance", str(imp), "--out", str(tmp_path), "--steps", "1,2",
            "--ratios", "0,0.3", "--num-cases", "2", "--test-cases", "3", "--repeats", "1"]
    assert main([*args, "--budget-ms", "1e6"]) == 0
    doc = json.loads((tmp_path / "search.json").read_text())
    assert len(doc["rows"]) == 4 and (tmp_path / "search.png").stat().st_size > 0
    pruned = [r for r in doc["rows"] if r["prune_ratio"] == 0.3]
    assert all(r["skip"] and r["params"] < doc["rows"][0]["params"] for r in pruned)
    best = doc["recommendation"]
    assert best["score"] == max(r["score"] for r in doc["rows"])
    assert any(r["pareto"] for r in doc["rows"])
    for r in doc["rows"]:  # cost = steps x forward(depth) + fixed
        assert r["pred_ms"] == pytest.approx(r["steps"] * doc["forward_ms"][str(r["prune_ratio"])] + doc["fixed_ms"], abs=0.02)
    # selection on validation cases, the pick's reported score on test cases, both with intervals
    assert doc["selection_split"] == "validation" and doc["test"]["split"] == "test" and doc["test"]["num_cases"] == 3
    assert all(r["interval"][0] <= r["score"] <= r["interval"][1] for r in doc["rows"])
    iv = doc["test"]["interval"]
    assert iv["low"] <= doc["test"]["score"] <= iv["high"] and iv["num_cases"] == 3
    out = capsys.readouterr().out
    assert "recommended under" in out and "the model's own" in out  # its default Euler sampler (no sampler.json)
    assert "3 test cases" in out and "validation" in out
    assert doc["sampler"] == {"sampler": "euler", "num_steps": 50, "guidance": 4.0, "shift": 3.0}
    assert main([*args, "--budget-ms", "0.001", "--guidance", "1"]) == 0
    out = capsys.readouterr().out
    assert "nothing fits" in out and "explicit override" in out
    assert json.loads((tmp_path / "search.json").read_text())["sampler"]["guidance"] == 1.0


def test_search_bad_input(tiny_run, tmp_path, capsys):
    model, imp = tiny_run
    assert main(["search", str(model), "--budget-ms", "100", "--out", str(tmp_path)]) == 2
    assert "no importance.json" in capsys.readouterr().err
    assert main(["search", str(model), "--importance", str(imp), "--budget-ms", "-1"]) == 2
    assert "--budget-ms must be > 0" in capsys.readouterr().err
    assert main(["search", str(model), "--importance", str(imp), "--budget-ms", "100", "--num-cases", "1"]) == 2
    assert "an interval needs 2 cases" in capsys.readouterr().err
