"""`fastlight evaluate-teacher`: the bar on ShapesBench's test cases, ghosts counted, with intervals."""
import json

import pytest
import torch

from fastlight.models.load import load_denoiser
from fastlight.shapes import bench as sb
from fastlight.shapes.teacher_eval import evaluate_teacher, score_videos

WORLD = sb.shapes.WorldConfig()


def test_bar_counts_ghosts_and_has_intervals():
    cases = sb.make_cases(6, WORLD)
    ideal = sb.ideal_videos(cases, WORLD)
    clips = [c.clip for c in cases]
    clean = score_videos(ideal, clips, WORLD)
    assert clean["ghost_free_clips"] == 1.0 and clean["direction_and_no_ghost"] == clean["direction_acc"] == 1.0
    ghosted = ideal.clone()
    red = torch.tensor(sb.shapes.COLOURS[clips[0].objects[0].colour]).view(3, 1, 1) * 2 - 1
    ghosted[0, :, 2:, 0:4, 20:24] = red[:, None]  # a 4x4 copy in a corner from frame 2 on
    r = score_videos(ghosted, clips, WORLD)
    assert r["num_ghost_clips"] == 1 and r["ghost_free_clips"] == pytest.approx(5 / 6)
    assert r["direction_and_no_ghost"] < r["direction_acc"] or r["direction_acc"] < 1
    iv = r["intervals"]["ghost_free_clips"]
    assert iv["low"] < 5 / 6 <= iv["high"] and iv["num_cases"] == 6


def test_evaluate_teacher_samples_what_shapesbench_samples(tiny_shapes_model, tmp_path):
    out = tmp_path / "bar.json"
    res = evaluate_teacher(str(tiny_shapes_model), num_cases=3, seed=0, out=str(out), batch=2,
                           overrides={"num_steps": 1})
    saved = json.loads(out.read_text())
    assert saved["split"] == "test" and saved["num_cases"] == 3 and "intervals" in saved
    assert saved["ideal_reference"]["ghost_free_clips"] == 1.0
    # --seed 0 draws ShapesBench's own per-case noise: the same clips `fastlight evaluate` judges
    model = load_denoiser(tiny_shapes_model).eval()
    cases = sb.make_cases(3, WORLD)
    spec = sb.SamplerSpec.euler(1, 4.0, 3.0)
    vids = sb.generate(model, cases, spec, seed=0, progress=False)
    again = score_videos(vids, [c.clip for c in cases], WORLD)
    assert again["direction_acc"] == res["direction_acc"] and again["num_ghost_clips"] == res["num_ghost_clips"]
