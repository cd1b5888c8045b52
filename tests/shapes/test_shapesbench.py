"""ShapesBench: the ideal clips are the upper bound, corruptions lower the right parts, the
generate path and the command run end to end on a tiny untrained model (CPU, seconds)."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from fastlight.shapes import world as shapes
from fastlight.diffusion.spec import SamplerSpec
from fastlight.evaluate import metrics
from fastlight.shapes import bench as sb

WORLD = shapes.WorldConfig()
FLIP = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "still"}


@pytest.fixture(scope="module")
def cases():
    return sb.make_cases(12, WORLD)


@pytest.fixture(scope="module")
def ideal(cases):
    return sb.ideal_videos(cases, WORLD)


@pytest.fixture(scope="module")
def ideal_result(cases, ideal):
    return sb.score_videos(ideal, cases, WORLD)


def _blur(videos):
    """3x3 box blur of frames 1..F-1 (frame 0 is the given image)."""
    B, C, Fr, H, W = videos.shape
    x = videos[:, :, 1:].permute(0, 2, 1, 3, 4).reshape(-1, C, H, W)
    x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.ones(C, 1, 3, 3) / 9, groups=C)
    out = videos.clone()
    out[:, :, 1:] = x.reshape(B, Fr - 1, C, H, W).permute(0, 2, 1, 3, 4)
    return out


def test_cases_are_fixed_and_prefix_stable():
    a, b = sb.make_cases(3, WORLD), sb.make_cases(5, WORLD)
    assert [c.prompt for c in a] == [c.prompt for c in b[:3]]
    assert all(torch.equal(x.image, y.image) for x, y in zip(a, b))
    assert all(c.seed == sb.SHAPESBENCH_SEED and c.split == "test" for c in b)
    assert a[0].image.shape == (3, WORLD.size, WORLD.size)
    val = sb.make_cases(5, WORLD, split="validation")
    assert not any(torch.equal(x.image, y.image) for x, y in zip(val, b))
    with pytest.raises(ValueError, match="split must be one of test, validation"):
        sb.make_cases(2, WORLD, split="train")


def test_weights_sum_to_one():
    assert sum(sb.WEIGHTS.values()) == pytest.approx(1.0)
    assert sb.ranking_score({k: 1.0 for k in sb.WEIGHTS}) == pytest.approx(1.0)
    # a part with nothing to measure is left out, the rest renormalised
    parts = {k: 1.0 for k in sb.WEIGHTS} | {"speed": None, "direction": 0.0}
    w = sb.WEIGHTS["direction"]
    assert sb.ranking_score(parts) == pytest.approx(1 - w / (1 - sb.WEIGHTS["speed"]))


def test_ideal_clips_score_at_the_top(ideal_result):
    p, m = ideal_result["parts"], ideal_result["metrics"]
    assert p["direction"] == pytest.approx(1.0)
    assert p["colour"] == pytest.approx(1.0)
    assert p["count"] == pytest.approx(1.0)
    assert p["sharpness"] == pytest.approx(1.0)
    assert p["ghost"] == pytest.approx(1.0) and ideal_result["metrics"]["num_ghost_clips"] == 0
    assert p["speed"] > 0.95 and p["shape"] >= 0.9
    assert ideal_result["score"] > 0.98
    assert m["psnr_db"] == metrics.PSNR_CAP_DB
    assert m["frechet_oracle"] == pytest.approx(0.0, abs=1e-6)
    assert len(ideal_result["per_video"]) == 12
    json.dumps(ideal_result)  # serialisable as is


def test_flipped_directions_lose_direction_only(cases, ideal_result):
    flipped = torch.stack([
        shapes.render(shapes.Clip(tuple(dataclasses.replace(o, direction=FLIP[o.direction]) for o in c.clip.objects)), WORLD)
        for c in cases
    ])
    r = sb.score_videos(flipped, cases, WORLD)
    assert r["parts"]["direction"] < 0.6
    assert r["parts"]["colour"] == pytest.approx(1.0)
    assert r["parts"]["count"] == pytest.approx(1.0)
    assert r["score"] < ideal_result["score"] - 0.15
    assert r["metrics"]["frechet_oracle"] > 0.5
    assert r["metrics"]["psnr_db"] < 50  # still objects keep their pixels: far below the 100 dB cap, not 0


def test_blur_loses_sharpness_not_motion(ideal, cases, ideal_result):
    r = sb.score_videos(_blur(ideal), cases, WORLD)
    assert r["metrics"]["sharpness_ratio_geomean"] < 0.6
    assert r["parts"]["sharpness"] < 0.6
    assert r["parts"]["direction"] == pytest.approx(1.0)
    assert r["parts"]["count"] == pytest.approx(1.0)
    assert r["score"] < ideal_result["score"] - 0.05


def test_noise_raises_gradient_energy_and_lowers_psnr(ideal, cases, ideal_result):
    noisy = ideal.clone()
    g = torch.Generator().manual_seed(0)
    noisy[:, :, 1:] = (noisy[:, :, 1:] + 0.3 * torch.randn(noisy[:, :, 1:].shape, generator=g)).clamp(-1, 1)
    r = sb.score_videos(noisy, cases, WORLD)
    assert r["metrics"]["sharpness_ratio_geomean"] > 2
    assert r["parts"]["sharpness"] < 0.5
    assert r["metrics"]["psnr_db"] < 25
    assert r["score"] < ideal_result["score"] - 0.2


def test_frozen_video_loses_motion(ideal, cases):
    r = sb.score_videos(ideal[:, :, :1].expand_as(ideal).clone(), cases, WORLD)
    moving = sum(o.direction != "still" for c in cases for o in c.clip.objects)
    total = sum(len(c.clip.objects) for c in cases)
    assert r["parts"]["direction"] == pytest.approx(1 - moving / total)
    assert r["parts"]["speed"] == pytest.approx(0.0)


def test_extra_colour_breaks_count(ideal, cases):
    v = ideal[0].clone()
    missing = next(c for c in shapes.COLOURS if c not in {o.colour for o in cases[0].clip.objects})
    v[:, -1, :4, :4] = torch.tensor(shapes.COLOURS[missing]).view(3, 1, 1) * 2 - 1  # a 16 px blob in the last frame
    assert not sb.score_video(v, cases[0], WORLD)["count_ok"]
    assert sb.score_video(ideal[0], cases[0], WORLD)["count_ok"]


def test_object_features_shape(ideal, cases):
    f = sb.object_features(ideal[0], cases[0].clip, WORLD)
    assert f.shape == (len(cases[0].clip.objects), 2 * (WORLD.num_frames - 1) + 7)
    assert f[:, -1] == pytest.approx(1.0)  # tracked in every frame


def test_score_real_is_deterministic():
    a = sb.score_real(4, WORLD, vbench=False)
    b = sb.score_real(4, WORLD, vbench=False)
    assert a["score"] == b["score"] and a["per_video"] == b["per_video"]
    assert a["model"] == "ideal"


@pytest.fixture(scope="module")
def tiny(tiny_shapes_model):
    from fastlight.models.load import load_denoiser

    return load_denoiser(tiny_shapes_model).eval()


def test_generate_euler_deterministic_and_batch_independent(tiny):
    cases = sb.make_cases(3, WORLD)
    euler = SamplerSpec.euler(2, guidance=2.0)
    a = sb.generate(tiny, cases, euler, batch_size=3, progress=False)
    b = sb.generate(tiny, cases, euler, batch_size=2, progress=False)
    assert a.shape == (3, 3, WORLD.num_frames, WORLD.size, WORLD.size)
    assert torch.allclose(a, b, atol=1e-5)
    assert a.abs().max() <= 1
    # frame 0 is the given image
    assert torch.allclose(a[:, :, 0], torch.stack([c.image for c in cases]), atol=1e-5)
    c = sb.generate(tiny, cases, euler, batch_size=3, seed=1, progress=False)
    assert not torch.allclose(a, c)


def test_generate_few_step_and_skip(tiny):
    cases = sb.make_cases(2, WORLD)
    few = SamplerSpec.few_step((1000, 500))
    a = sb.generate(tiny, cases, few, progress=False)
    assert torch.equal(a, sb.generate(tiny, cases, few, progress=False))  # reproducible for a fixed batch size
    c = sb.generate(tiny, cases, few, skip=[1], progress=False)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, sb.generate(tiny, cases, SamplerSpec.euler(2, 1.0), progress=False))


def test_shapesbench_on_tiny_model(tiny):
    r = sb.shapesbench(tiny, SamplerSpec.euler(2, guidance=2.0), num_cases=4, progress=False, vbench=False)
    assert 0 <= r["score"] <= 1
    assert set(r["parts"]) == set(sb.WEIGHTS)
    assert r["nfe_per_video"] == 4 and r["num_steps"] == 2 and r["params"] == r["params_full"]
    assert r["sampler_spec"] == SamplerSpec.euler(2, guidance=2.0).to_json()
    r2 = sb.shapesbench(tiny, SamplerSpec.euler(2, guidance=2.0), num_cases=4, progress=False, vbench=False)
    assert r["score"] == r2["score"] and r["metrics"] == r2["metrics"]
    json.dumps(r)


def test_evaluate_model_writes_json_and_videos(tiny_shapes_model, tmp_path, capsys):
    out = tmp_path / "bench"
    r = sb.evaluate_model(str(tiny_shapes_model), str(out), overrides={"sampler": "few_step", "num_steps": 2},
                          num_cases=4, seed=0, save_videos=True, vbench=False)
    printed = capsys.readouterr().out
    assert "explicit override" in printed  # which sampler: said as the work starts
    assert "ShapesBench score" not in printed  # the summary line is the command's (commands/evaluate.py)
    data = json.loads((out / "shapesbench.json").read_text())
    assert data["score"] == pytest.approx(r["score"])
    assert data["ideal"]["score"] > 0.95 and data["ideal"]["score"] >= data["score"]
    assert data["sampler"] == "few_step" and data["levels"] == [1.0, 0.5] and data["nfe_per_video"] == 2
    assert list(data)[-1] == "per_video" and len(data["per_video"]) == 4
    assert data["vbench"] == {"skipped": "not requested"} and "vbench" in data["ideal"]
    for f in data["files"]:
        assert (out / f).stat().st_size > 0
    assert {"samples/grid.gif", "samples/grid.mp4"} <= set(data["files"])
    assert not list(out.glob(".*tmp*"))


def test_evaluate_model_uses_the_students_own_sampler(tiny_shapes_model, tmp_path, capsys):
    """A few-step student is scored with its sampler.json by default, not 50 Euler steps + CFG 4."""
    import shutil

    student = tmp_path / "student"
    shutil.copytree(tiny_shapes_model, student)
    SamplerSpec.few_step((1000, 500), guidance=1.0).save(student)
    data = sb.evaluate_model(str(student), str(tmp_path / "ev"), num_cases=2, save_videos=False, vbench=False)
    assert "the model's own" in capsys.readouterr().out
    assert data["sampler"] == "few_step" and data["num_steps"] == 2 and data["nfe_per_video"] == 2
    with pytest.raises(ValueError, match="few-step student"):
        sb.evaluate_model(str(student), str(tmp_path / "ev2"), overrides={"num_steps": 8}, num_cases=2)
    assert not (tmp_path / "ev2").exists()


def test_vbench_dimensions_wired_and_skipped(monkeypatch, ideal, cases):
    import sys
    import types

    import numpy as np

    seen = {}

    def score_videos(videos, images, fps):
        seen.update(n=len(videos), shape=videos[0].shape, dtype=videos[0].dtype, image=images[0].shape, fps=fps)
        return {"subject_consistency": {"score": np.float32(0.5), "kind": "fake"}}

    monkeypatch.setitem(sys.modules, "fastlight.evaluate.vbench", types.SimpleNamespace(score_videos=score_videos))
    r = sb.score_videos(ideal[:2], cases[:2], WORLD, vbench=True)
    assert r["vbench"] == {"subject_consistency": {"score": 0.5, "kind": "fake"}}
    assert seen == dict(n=2, shape=(WORLD.num_frames, WORLD.size, WORLD.size, 3), dtype=np.uint8,
                        image=(WORLD.size, WORLD.size, 3), fps=sb.FPS)
    monkeypatch.setitem(sys.modules, "fastlight.evaluate.vbench", None)  # import fails
    r = sb.score_videos(ideal[:2], cases[:2], WORLD, vbench=True)
    assert "skipped" in r["vbench"] and "vbench" in r["vbench"]["skipped"]


def _with_wrap_ghost(video, case):
    """Paste a 4 x 3 px copy of each object's colour at the border opposite its motion, frames 3.."""
    v = video.clone()
    for o in case.clip.objects:
        colour = torch.tensor(shapes.COLOURS[o.colour]).view(3, 1, 1) * 2 - 1
        for f in range(3, WORLD.num_frames):
            x, y = (int(c) for c in o.centre_px(f))
            far_x = 21 if o.x0_px < WORLD.size / 2 else 0
            far_y = 21 if o.y0_px < WORLD.size / 2 else 0
            if o.direction in ("up", "down"):
                v[:, f, far_y:far_y + 3, max(x - 2, 0):x + 2] = colour
            else:
                v[:, f, max(y - 2, 0):y + 2, far_x:far_x + 3] = colour
    return v


def test_ghost_part_and_per_clip_failure(ideal, cases, ideal_result):
    ghosted = ideal.clone()
    ghosted[:6] = torch.stack([_with_wrap_ghost(ideal[i], cases[i]) for i in range(6)])
    r = sb.score_videos(ghosted, cases, WORLD)
    assert [pv["ghost_free"] for pv in r["per_video"]] == [False] * 6 + [True] * 6
    assert r["parts"]["ghost"] == pytest.approx(0.5) and r["metrics"]["num_ghost_clips"] == 6
    assert r["score"] < ideal_result["score"] - 0.04


def test_every_score_and_part_has_a_reproducible_interval(ideal, cases, ideal_result):
    noisy = _blur(ideal)
    r = sb.score_videos(noisy, cases, WORLD)
    iv = r["intervals"]
    assert set(iv["parts"]) == set(sb.WEIGHTS)
    assert iv["score"]["low"] <= r["score"] <= iv["score"]["high"] and iv["score"]["num_cases"] == 12
    assert iv["score"]["high"] - iv["score"]["low"] > 0
    for k, v in r["parts"].items():
        assert iv["parts"][k]["estimate"] == pytest.approx(v)
    assert sb.score_videos(noisy, cases, WORLD)["intervals"] == iv  # seeded: the same on every rerun
    assert {k: len(v) for k, v in r["per_case"].items()} == {k: 12 for k in sb.CASE_KEYS}
    # the per-case data rebuild the score: the same maths as score_videos
    arrays = {k: torch.tensor(v, dtype=torch.float64).numpy() for k, v in r["per_case"].items()}
    assert float(sb.score_values(arrays)) == pytest.approx(r["score"])


def test_paired_interval_of_two_results_on_the_same_cases(ideal, cases, ideal_result):
    blurred = {**sb.score_videos(_blur(ideal), cases, WORLD), "case_seed": 1, "split": "test", "seed": 0, "num_cases": 12}
    clean = {**ideal_result, "case_seed": 1, "split": "test", "seed": 0, "num_cases": 12}
    d = sb.paired_intervals(clean, blurred)
    assert d["score"].estimate == pytest.approx(clean["score"] - blurred["score"])
    assert d["score"].low > 0  # the ideal clips beat their blurred copies at the 95% level
    assert d["parts"]["direction"].estimate == pytest.approx(0.0)
    assert not d["parts"]["direction"].excludes(0.0)
    with pytest.raises(ValueError, match="same cases and noise"):
        sb.paired_intervals(clean, {**blurred, "seed": 1})
