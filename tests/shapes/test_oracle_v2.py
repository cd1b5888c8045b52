"""The v2 oracle (`world.check_clip_v2`) and ShapesBench on a v2 world: ideal clips pass every part,
a decoded-looking copy (blur + noise) still passes, and each synthetic failure fails its own part."""
import dataclasses
import json
import types

import pytest
import torch

from fastlight.shapes import bench as sb, teacher_eval, world as shapes

V2 = shapes.WORLDS["v2"]


def _obj(**kw):
    base = dict(colour="red", shape="circle", radius_px=8.0, x0_px=40.0, y0_px=30.0, direction="right",
                speed="quickly", speed_px=3.5)
    return shapes.ShapeObject(**{**base, **kw})


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_fit_places_an_object_half_out_of_the_frame(shape):
    obj = _obj(shape=shape, x0_px=46.0)  # leaves through the right border from frame ~3
    alpha = shapes.colour_alpha(shapes.render(shapes.Clip((obj,)), V2), "red")
    frames = [f for f in range(V2.num_frames) if alpha[f].sum() >= 30]
    true = torch.tensor([obj.centre_px(f) for f in frames])
    fit = shapes.fit_centres(alpha[frames], torch.ones_like(alpha[frames]), obj, true + torch.tensor([-3.0, 1.5]))[0]
    assert (fit - true).norm(dim=1).max() < 0.25
    assert true[-1, 0] > V2.size  # the last fitted frame's centre is outside the canvas


def test_ideal_clip_that_leaves_passes_and_its_wrap_around_fails():
    obj = _obj()
    clip = shapes.Clip((obj,))
    r = shapes.check_clip(shapes.render(clip, V2), clip, V2)
    o = r["objects"][0]
    assert o["direction_ok"] and o["speed_ok"] and not o["abrupt"] and not o["static"] and not o["ghost"]
    assert r["count_ok"] and o["colour_kept"] == 1.0 and o["speed_ratio"] == pytest.approx(1.0, abs=0.02)
    assert 3 <= o["frames_seen"] < V2.num_frames  # judged on the frames before it left
    wrapped = shapes.Clip((obj, dataclasses.replace(obj, x0_px=obj.x0_px - V2.size)))
    w = shapes.check_clip(shapes.render(wrapped, V2), clip, V2)
    assert w["ghost"] and w["objects"][0]["ghost"] and w["objects"][0]["direction_ok"]
    # a slightly slow object still leaving after the ideal one has gone is no ghost
    slow = shapes.Clip((dataclasses.replace(obj, speed_px=3.5 * 0.93),))
    s = shapes.check_clip(shapes.render(slow, V2), clip, V2)["objects"][0]
    assert not s["ghost"] and s["direction_ok"] and s["speed_ok"] and s["speed_ratio"] == pytest.approx(0.93, abs=0.02)


def test_wrong_speed_static_jitter_and_colour_each_fail_their_part():
    obj = _obj(direction="down", speed="steadily", speed_px=2.0, x0_px=30.0, y0_px=12.0)
    clip = shapes.Clip((obj, _obj(colour="blue", shape="square", x0_px=50.0, y0_px=50.0, direction="still",
                                  speed="slowly", speed_px=1.0)))

    def check(video):
        return shapes.check_clip(video, clip, V2)

    for k in (0.5, 2.0):
        o = check(shapes.render(shapes.Clip((dataclasses.replace(obj, speed_px=2.0 * k), clip.objects[1])), V2))
        assert not o["objects"][0]["speed_ok"] and o["objects"][0]["speed_ratio"] == pytest.approx(k, rel=0.05)
        assert o["objects"][0]["direction_ok"] and not o["ghost"] and not o["objects"][0]["abrupt"]
    static = check(shapes.render(shapes.Clip((dataclasses.replace(obj, direction="still"), clip.objects[1])), V2))
    assert static["objects"][0]["static"] and not static["objects"][0]["direction_ok"] and not static["ghost"]
    path = torch.tensor([obj.centre_px(f) for f in range(V2.num_frames)])
    path[1::2, 0] += 2.0  # every other frame 2 px off the path
    jit = check(shapes.render(clip, V2, {0: path}))["objects"][0]
    assert jit["abrupt"] and jit["jerk_px"] > 1.5 and jit["direction_ok"] and not jit["ghost"]
    recoloured = check(shapes.render(shapes.Clip((dataclasses.replace(obj, colour="yellow"), clip.objects[1])), V2))
    assert recoloured["objects"][0]["colour_kept"] == 0.0 and not recoloured["count_ok"]
    assert recoloured["extra_colours"] == ["yellow"] and recoloured["missing"] == ["red"]
    assert recoloured["objects"][1]["colour_kept"] == 1.0 and recoloured["objects"][1]["direction_ok"]


def test_selftest_passes_ideal_and_decoded_and_catches_every_failure():
    r = sb.oracle_selftest(num_clips=6, seed=3)
    assert r["ideal"]["objects_pass"] == 1.0 and r["ideal"]["ghost_free_clips"] == 1.0
    assert r["ideal"]["count_ok_clips"] == 1.0
    assert r["decoded"]["objects_pass"] >= 0.9 and r["decoded"]["direction"] == 1.0
    for name in ("wrapped", "static", "jitter", "colour", "slow", "fast"):
        assert r[name]["num_broken"] > 0 and r[name]["caught"] == 1.0, (name, r[name])
        assert r[name]["others_pass"] >= 0.9, (name, r[name])


@pytest.fixture(scope="module")
def v2_cases():
    return sb.make_cases(5, V2)


@pytest.fixture(scope="module")
def v2_ideal(v2_cases):
    return sb.score_videos(sb.ideal_videos(v2_cases, V2), v2_cases, V2)


def test_shapesbench_v2_ideal_parts_and_intervals(v2_cases, v2_ideal):
    assert v2_cases[0].image.shape == (3, 64, 64)
    assert set(sb.WEIGHTS_V2) <= set(v2_ideal["parts"]) and sum(sb.WEIGHTS_V2.values()) == pytest.approx(1.0)
    assert v2_ideal["weights"] == sb.WEIGHTS_V2
    p = v2_ideal["parts"]
    for k in ("direction", "speed_within_10pct", "smooth", "static", "colour", "count", "ghost", "sharpness"):
        assert p[k] == pytest.approx(1.0), k
    assert p["speed"] > 0.95 and v2_ideal["score"] > 0.97
    assert set(v2_ideal["intervals"]["parts"]) == set(p) and v2_ideal["intervals"]["score"]["num_cases"] == 5
    assert v2_ideal["per_case"].keys() == set(sb.CASE_KEYS_V2)
    json.dumps(v2_ideal)


def test_shapesbench_v2_static_videos_lose_motion_parts_with_a_paired_interval(v2_cases, v2_ideal):
    frozen = sb.ideal_videos(v2_cases, V2)[:, :, :1].expand(-1, -1, V2.num_frames, -1, -1).clone()
    r = sb.score_videos(frozen, v2_cases, V2)
    assert r["parts"]["static"] == pytest.approx(0.0) and r["parts"]["speed_within_10pct"] == pytest.approx(0.0)
    assert r["score"] < v2_ideal["score"] - 0.2
    keys = {"case_seed": 1, "split": "test", "seed": 0, "num_cases": 5}
    d = sb.paired_intervals({**v2_ideal, **keys}, {**r, **keys})
    assert d["score"].estimate == pytest.approx(v2_ideal["score"] - r["score"]) and d["score"].low > 0


def test_teacher_bar_and_model_world_in_v2(v2_cases):
    clips = [c.clip for c in v2_cases]
    bar = teacher_eval.score_videos(sb.ideal_videos(v2_cases, V2), clips, V2)
    assert bar["speed_within_10pct"] == 1.0 and bar["static_rate"] == 0.0 and bar["abrupt_rate"] == 0.0
    assert bar["direction_and_no_ghost"] == 1.0 and "speed_within_10pct" in bar["intervals"]
    model = types.SimpleNamespace(meta={"world": V2.to_dict()})
    assert sb.model_world(model) == V2
    assert sb.model_world(types.SimpleNamespace(meta={"world": {"size": 24, "num_frames": 8}})) == shapes.WorldConfig()
