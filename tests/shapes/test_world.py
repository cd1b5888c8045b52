import math

import pytest
import torch

from fastlight.shapes import text, world as shapes


def test_sampling_is_deterministic_by_seed():
    a, b = shapes.sample_clips(3, 20), shapes.sample_clips(3, 20)
    assert [c.prompt for c in a] == [c.prompt for c in b]
    assert torch.equal(shapes.render_batch(a[:4]), shapes.render_batch(b[:4]))
    assert [c.prompt for c in shapes.sample_clips(4, 20)] != [c.prompt for c in a]


def test_world_covers_vocabulary_and_object_counts():
    clips = shapes.sample_clips(0, 400)
    objs = [o for c in clips for o in c.objects]
    assert {o.colour for o in objs} == set(shapes.COLOURS)
    assert {o.shape for o in objs} == set(shapes.SHAPES)
    assert {o.direction for o in objs} == set(shapes.DIRECTIONS)
    assert {o.speed for o in objs} == set(shapes.SPEEDS_PX)
    counts = [len(c.objects) for c in clips]
    assert 1 in counts and 2 in counts


def test_first_frame_does_not_reveal_direction():
    # start positions are drawn from the same box whatever the direction
    clips = shapes.sample_clips(1, 1500, shapes.WorldConfig(p_two_objects=0.0))
    mean_x = {}
    for d in ("left", "right"):
        xs = [c.objects[0].x0_px for c in clips if c.objects[0].direction == d]
        mean_x[d] = sum(xs) / len(xs)
    assert abs(mean_x["left"] - mean_x["right"]) < 0.5


def test_render_range_shape_and_motion():
    obj = shapes.ShapeObject("red", "circle", 4.0, 12.0, 12.0, "right", "quickly")
    v = shapes.render(shapes.Clip((obj,)))
    assert v.shape == (3, 8, 24, 24) and v.min() >= -1 and v.max() <= 1
    tr = shapes.track(v, ["red"])["red"]
    (x0, y0), (x7, y7) = tr.centroid_px[0], tr.centroid_px[7]
    assert x7 - x0 == pytest.approx(7 * shapes.SPEEDS_PX["quickly"], abs=0.05)
    assert y7 == pytest.approx(y0, abs=0.05)
    assert tr.area_px[0] == pytest.approx(math.pi * 16, rel=0.03)


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_oracle_recovers_shape(shape):
    obj = shapes.ShapeObject("green", shape, 4.2, 11.3, 12.6, "still", "slowly")
    tr = shapes.track(shapes.render(shapes.Clip((obj,))), ["green"])["green"]
    assert set(tr.shape) == {shape}


def test_oracle_passes_ideal_clips_and_fails_wrong_ones():
    clips = shapes.sample_clips(5, 40)
    ok = [o for c in clips for o in shapes.check_clip(shapes.render(c), c)["objects"]]
    assert sum(o["direction_ok"] for o in ok) == len(ok)
    assert sum(o["colour_kept"] for o in ok) / len(ok) > 0.99
    # the same first frames moving the opposite way are caught
    flip = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "still"}
    moving = [c for c in clips if all(o.direction != "still" for o in c.objects)]
    wrong = 0
    for c in moving:
        bad = shapes.Clip(tuple(shapes.ShapeObject(**{**o.__dict__, "direction": flip[o.direction]}) for o in c.objects))
        wrong += sum(not o["direction_ok"] for o in shapes.check_clip(shapes.render(bad), c)["objects"])
    assert wrong == sum(len(c.objects) for c in moving)


def test_oracle_sees_a_lost_colour():
    c = shapes.sample_clips(7, 1, shapes.WorldConfig(p_two_objects=0.0))[0]
    v = shapes.render(c)
    v[:, 4:] = v[:, :1] * 0 + (torch.tensor(shapes.BACKGROUND) * 2 - 1).view(3, 1, 1, 1)  # object vanishes
    res = shapes.check_clip(v, c)["objects"][0]
    assert res["colour_kept"] < 0.6


def test_text_encoder_tokens_and_null():
    e = text.encode(["a red circle moving left quickly", "a blue square staying still and a cyan triangle moving up slowly", ""])
    assert e.shape == (3, text.MAX_OBJECTS, text.TEXT_DIM)
    assert e[0, 0, 0] == 1 and e[0, 0, 16] == -2 and e[0, 1].abs().sum() == 0
    assert e[1, 1, 17] == -1  # up, slowly: vy = -0.5 px/frame, x2
    assert e[2].abs().sum() == 0  # null prompt
    assert not torch.equal(text.encode("a red circle moving left quickly"), text.encode("a red circle moving right quickly"))


@pytest.mark.parametrize(
    "prompt,needle",
    [
        ("a purple circle moving left quickly", "not in the Shapes vocabulary"),
        ("a red circle moving left", "needs a speed"),
        ("a red circle", "exactly one colour, one shape and one direction"),
        ("a red circle staying still and a red square staying still", "share a colour"),
    ],
)
def test_bad_prompts_name_the_fix(prompt, needle):
    with pytest.raises(text.PromptError, match=needle):
        text.encode(prompt)


def test_prompt_roundtrip_through_parser():
    for c in shapes.sample_clips(11, 50):
        parsed = text.parse(c.prompt)
        assert [(p["colour"], p["shape"], p["direction"]) for p in parsed] == [(o.colour, o.shape, o.direction) for o in c.objects]


# ---- ghosts: colour of an object away from its tracked position -------------------------------------
def _one(direction="left", speed="quickly", shape="circle", seed=0):
    spec = dict(colour="red", shape=shape, direction=direction, speed=speed)
    return shapes.place_objects([spec], torch.Generator().manual_seed(seed))


def _paint(video, frame, ys, xs, colour="red"):
    video[:, frame, ys, xs] = torch.tensor(shapes.COLOURS[colour]).view(3, 1, 1) * 2 - 1


def test_ideal_clips_never_have_ghosts():
    world = shapes.WorldConfig()
    for clip in shapes.sample_clips(321, 150, world):
        res = shapes.check_clip(shapes.render(clip, world), clip, world)
        assert not res["ghost"] and all(max(o["ghost_px"]) == 0 and o["ok"] == o["direction_ok"]
                                        for o in res["objects"]), clip.prompt


def test_wrap_around_ghost_at_the_opposite_border_fails_the_clip():
    """A circle moving left whose left part re-appears at the right border from frame 3 on:
    the direction is still right (the old oracle passed it), the ghost fails the clip."""
    clip = _one("left")
    v = shapes.render(clip)
    obj = clip.objects[0]
    for f in range(3, 8):
        y = int(obj.centre_px(f)[1])
        _paint(v, f, slice(y - 2, y + 2), slice(21, 24))  # a partial copy: 4 x 3 px at the right edge
    res = shapes.check_clip(v, clip)
    o = res["objects"][0]
    assert o["direction_ok"]  # what the centroid path alone says
    assert res["ghost"] and o["ghost"] and not o["ok"]
    assert o["ghost_px"][:2] == [0, 0] and min(o["ghost_px"][2:]) >= shapes.GHOST_MIN_PX


def test_duplicate_and_smear_are_ghosts():
    clip = _one("right", "slowly", "square", seed=3)
    obj = clip.objects[0]
    dup = shapes.render(clip)
    x, y = (int(c) for c in obj.centre_px(5))
    _paint(dup, 5, slice((y + 9) % 24 - 2, (y + 9) % 24 + 1), slice(x - 1, x + 2))  # a 3x3 copy 9 px below
    assert shapes.check_clip(dup, clip)["ghost"]
    smear = shapes.render(clip)
    for f in range(1, 8):  # a trail 9 px long behind the object, connected to it
        cx, cy = obj.centre_px(f)
        _paint(smear, f, slice(int(cy) - 1, int(cy) + 1), slice(max(int(cx) - 12, 0), int(cx)))
    assert shapes.check_clip(smear, clip)["ghost"]


def test_faint_or_tiny_specks_are_not_ghosts():
    clip = _one("up", "quickly", "triangle", seed=5)
    v = shapes.render(clip)
    _paint(v, 4, slice(0, 1), slice(0, 2))  # 2 px: under GHOST_MIN_PX
    faint = torch.tensor(shapes.COLOURS["red"]) * 0.3 + torch.tensor(shapes.BACKGROUND) * 0.7
    v[:, 6, 20:23, 0:3] = faint.view(3, 1, 1) * 2 - 1  # coverage 0.3 < 0.5: a fringe, not an object
    assert not shapes.check_clip(v, clip)["ghost"]


def test_object_covered_by_another_is_not_a_ghost():
    """Two objects crossing: the one behind is partly covered by the one in front; what is left of
    it lies on the ideal object, so it is no ghost."""
    a = shapes.ShapeObject("red", "square", 4.5, 8.0, 12.0, "right", "quickly")
    b = shapes.ShapeObject("blue", "square", 1.6, 15.0, 12.0, "still", "slowly")  # drawn on top
    clip = shapes.Clip((a, b))
    res = shapes.check_clip(shapes.render(clip), clip)
    assert not res["ghost"], res
