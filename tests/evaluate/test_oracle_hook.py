"""The world-oracle hook of fastlight/evaluate/real.py, generic side: a pipeline no plug-in claims is evaluated
exactly as before (no `oracle` in eval.json), and an oracle gets every row's decoded videos in case order and
the paired comparison of each row with the reference."""
from __future__ import annotations

import json

import numpy as np

from fastlight.diffusion.spec import SamplerSpec
from fastlight.evaluate.real import ORACLE_CASES, evaluate_oracle_cases, evaluate_on_pipeline, pipeline_oracle

SMALL = dict(num_frames=5, height=16, width=16)
PROMPTS = ["a red circle moves left quickly", "a dog runs through tall grass", "two cats play with yarn"]


class MeanOracle:
    """Scores a row by its videos' mean brightness (per video), pairs by the difference of means."""

    name = "mean"

    def __init__(self):
        self.scored = []

    def cases(self, n, folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cases.txt").write_text("\n".join(PROMPTS[:n]))
        return PROMPTS[:n], None

    def score(self, videos):
        self.scored.append([v.shape for v in videos])
        per = [float(v.mean()) for v in videos]
        return {"score": float(np.mean(per)), "interval": None, "per": per}

    def paired(self, a, b):
        return {"score": {"estimate": a["score"] - b["score"], "low": 0.0, "high": 0.0}}

    def describe(self):
        return {"name": self.name, "num_cases": len(self.scored[0]) if self.scored else None}


def _models(pipe):
    euler = SamplerSpec.euler(2, 3.0, 3.0)
    return {"teacher": (pipe / "transformer", euler), "other": (pipe / "transformer", SamplerSpec.euler(1, 1.0, 3.0))}


def test_no_plugin_claims_a_wan_pipeline_and_its_eval_is_unchanged(tiny_pipeline, tmp_path):
    pipe = tiny_pipeline("wan21-t2v")
    assert pipeline_oracle(pipe, **SMALL) is None
    res = evaluate_on_pipeline(pipe, _models(pipe), PROMPTS[:2], tmp_path / "ev", seed=0, videos=False,
                               progress=False, device="cpu", max_text_len=16, **SMALL)
    assert "oracle" not in res and "oracle" not in json.loads((tmp_path / "ev" / "eval.json").read_text())


def test_an_oracle_scores_every_row_on_its_cases(tiny_pipeline, tmp_path, capsys):
    pipe = tiny_pipeline("wan21-t2v")
    oracle = MeanOracle()
    capsys.readouterr()
    res = evaluate_oracle_cases(pipe, _models(pipe), oracle, 3, tmp_path / "ev", seed=0, videos=False,
                                progress=True, device="cpu", max_text_len=16, **SMALL)
    assert "evaluate: oracle" in capsys.readouterr().err  # the oracle's pass has its own bar (minutes on Shapes)
    assert (tmp_path / "ev" / ORACLE_CASES / "cases.txt").is_file() and res["num_prompts"] == 3
    assert oracle.scored == [[(5, 16, 16, 3)] * 3] * 2  # each row's 3 decoded uint8 videos, once
    orc = json.loads((tmp_path / "ev" / "eval.json").read_text())["oracle"]
    assert orc["name"] == "mean" and list(orc["models"]) == ["teacher", "other"] and list(orc["pairs"]) == ["other"]
    assert orc["pairs"]["other"]["score"]["estimate"] == orc["models"]["other"]["score"] - orc["models"]["teacher"]["score"]
