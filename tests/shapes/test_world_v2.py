"""The v2 Shapes world (issue #17 item 2): named worlds and their round trip, the open 64 px world's
sampler (first frame silent about the direction, bounded rejection), rendering that clips at the
canvas, the 3-token text encoder, the `shapes` source's world option."""
import math

import pytest
import torch

from fastlight.data.source import DataError, build_source
from fastlight.errors import ConfigError
from fastlight.shapes import text, world as shapes
from fastlight.shapes.source import ShapesSource

V2 = shapes.WORLDS["v2"]


def test_named_worlds_and_their_round_trip():
    assert shapes.WORLDS["v1"] == shapes.WorldConfig() and shapes.world_from_name("v1") == shapes.WorldConfig()
    assert (V2.size, V2.num_frames, V2.max_objects, V2.name) == (64, 17, 3, "v2")
    assert (V2.num_frames - 1) % 4 == 0  # 1 + 4k frames: the VAE's 4x temporal compression
    nine = shapes.world_from_name("v2", num_frames=9)
    assert nine.num_frames == 9 and nine.speeds_px == V2.speeds_px and V2.num_frames == 17
    for w in (shapes.WorldConfig(), V2, nine):
        d = w.to_dict()
        assert d["world"] == w.name and shapes.WorldConfig.from_dict(d) == w
    # the shipped teacher's fastlight.json world is v1 at its size
    assert shapes.WorldConfig.from_dict({"size": 24, "num_frames": 8}) == shapes.WorldConfig()
    with pytest.raises(ConfigError, match="unknown Shapes world 'v3'"):
        shapes.world_from_name("v3")
    with pytest.raises(ConfigError, match="no field 'colour_count'"):
        shapes.WorldConfig.from_dict({"world": "v2", "colour_count": 3})
    with pytest.raises(ConfigError, match="object_probs"):
        shapes.WorldConfig(name="v2", object_probs=(0.5, 0.6))


def test_v2_clips_cover_counts_speeds_directions_and_start_rules():
    clips = shapes.sample_clips(0, 300, V2)
    assert [c.prompt for c in clips[:20]] == [c.prompt for c in shapes.sample_clips(0, 20, V2)]
    assert {len(c.objects) for c in clips} == {1, 2, 3}
    objs = [o for c in clips for o in c.objects]
    assert {o.speed for o in objs} == set(V2.speeds_px) and {o.direction for o in objs} == set(shapes.DIRECTIONS)
    assert all(o.speed_px_per_frame == V2.speeds_px[o.speed] for o in objs)
    assert all(V2.radius_min_px <= o.radius_px <= V2.radius_max_px for o in objs)
    lo, hi = V2.start_margin_px, V2.size - V2.start_margin_px
    assert all(lo <= o.x0_px <= hi and lo <= o.y0_px <= hi for o in objs)
    vis = [shapes.first_frame_visible(o.shape, o.radius_px, o.x0_px, o.y0_px, V2.size) for o in objs]
    assert min(vis) >= V2.min_first_visible and min(vis) < 0.9  # some start partly outside the frame
    for c in clips:  # no overlap in frame 0
        for i, a in enumerate(c.objects):
            for b in c.objects[:i]:
                assert math.hypot(a.x0_px - b.x0_px, a.y0_px - b.y0_px) >= a.radius_px + b.radius_px + 1
    leaving = [o for o in objs if o.direction != "still" and not -12 < o.centre_px(V2.num_frames - 1)[0] < 76]
    assert len(leaving) > 20  # objects do leave the frame
    assert "steadily" in " ".join(c.prompt for c in clips)


def test_v2_first_frame_does_not_reveal_the_direction():
    """Start positions are drawn whatever the direction: over 2,000 clips the mean start x of
    left- and right-moving objects (and y of up / down ones) agree within 2.5 px (SE of the
    difference ~0.9 px; a border-biased sampler would differ by ~10 px)."""
    clips = shapes.sample_clips(2, 2000, V2)
    objs = [o for c in clips for o in c.objects]

    def mean(vals):
        vals = list(vals)
        return sum(vals) / len(vals)

    x = {d: mean(o.x0_px for o in objs if o.direction == d) for d in ("left", "right")}
    y = {d: mean(o.y0_px for o in objs if o.direction == d) for d in ("up", "down")}
    assert abs(x["left"] - x["right"]) < 2.5 and abs(y["up"] - y["down"]) < 2.5
    near_left = {d: mean(o.x0_px < 12 for o in objs if o.direction == d) for d in ("left", "right")}
    assert abs(near_left["left"] - near_left["right"]) < 0.05


def test_rejection_sampling_is_bounded(monkeypatch):
    """A world that cannot hold its objects raises a ConfigError instead of looping forever."""
    with pytest.raises(ConfigError, match="could not place 2 non-overlapping objects"):
        shapes.sample_clips(0, 1, shapes.WorldConfig(size=8, p_two_objects=1.0))
    monkeypatch.setattr(shapes, "MAX_PLACEMENT_TRIES", 50)
    tight = shapes.WorldConfig(size=20, name="v2", radius_min_px=7, radius_max_px=10, object_probs=(0, 0, 1),
                               speeds_px=dict(V2.speeds_px))
    with pytest.raises(ConfigError, match="use a bigger size, smaller radii or fewer objects"):
        shapes.sample_clips(0, 1, tight)


def test_v2_render_clips_at_the_canvas_and_never_wraps():
    obj = shapes.ShapeObject("red", "circle", 8.0, 50.0, 30.0, "right", "quickly", 3.5)
    v = shapes.render(shapes.Clip((obj,)), V2)
    assert v.shape == (3, 17, 64, 64) and v.min() >= -1 and v.max() <= 1
    red = shapes.colour_alpha(v, "red")
    area = red.sum(dim=(1, 2))
    assert area[0] == pytest.approx(math.pi * 64, rel=0.03)
    assert 0 < area[4] < area[0] and area[-1] < 1e-3  # leaving, then gone
    assert red[:, :, :20].sum() < 1e-3  # nothing re-enters at the left border


def test_v2_text_encoder_three_tokens_and_speed_slots():
    p3 = "a red circle moving left quickly and a blue square staying still and a green triangle moving up steadily"
    e = text.encode([p3, "a cyan circle moving down slowly", ""], V2)
    assert e.shape == (3, 3, text.TEXT_DIM)
    assert e[0, 0, 15] == 1 and e[0, 0, 16] == pytest.approx(-0.6 * 3.5)  # quickly, left at 3.5 px/frame
    assert e[0, 1, 14:20].abs().sum() == 1 and e[0, 1, 18] == 1  # still: no speed, no velocity
    assert e[0, 2, 19] == 1 and e[0, 2, 17] == pytest.approx(-0.6 * 2.0)  # steadily: the new slot
    assert e[1, 0, 14] == 1 and e[1, 1:].abs().sum() == 0 and e[2].abs().sum() == 0
    assert e[:, :, 20:].abs().sum() == 0
    # the v1 encoder is unchanged and does not know the v2 speed or a third object
    assert text.encode("a red circle moving left quickly").shape == (1, 2, text.TEXT_DIM)
    with pytest.raises(text.PromptError, match="'steadily' is not in the v1 Shapes world; use slowly/quickly"):
        text.encode("a red circle moving left steadily")
    with pytest.raises(text.PromptError, match="1 to 2"):
        text.encode(p3)
    with pytest.raises(text.PromptError, match="not in the Shapes vocabulary"):
        text.encode("a red circle moving sideways quickly", V2)
    for c in shapes.sample_clips(5, 30, V2):
        parsed = text.parse(c.prompt, V2)
        assert [(p["colour"], p["direction"], p["speed"]) for p in parsed if p["direction"] != "still"] == [
            (o.colour, o.direction, o.speed) for o in c.objects if o.direction != "still"]


def test_source_world_option():
    b = ShapesSource(batch_size=2, world="v2", stream="validation").batch(0)
    assert b["x0"].shape == (2, 3, 17, 64, 64) and b["text"].shape == (2, 3, text.TEXT_DIM)
    assert b["image"].shape == (2, 3, 1, 64, 64) and b["text_mask"].shape == (2, 3)
    assert torch.equal(b["text"], text.encode(b["prompts"], V2))
    assert ShapesSource(batch_size=1, world="v2", num_frames=9).batch(0)["x0"].shape[2] == 9
    assert ShapesSource(batch_size=1).batch(0)["x0"].shape == (1, 3, 8, 24, 24)
    with pytest.raises(DataError, match="unknown Shapes world 'v9'"):
        ShapesSource(world="v9")
    # a v2 model's fastlight.json world, passed as the source's defaults (train/batches.recipe_source)
    src = build_source({"_component_": "fastlight.shapes.source:ShapesSource"}, seed=0, batch_size=1, **V2.to_dict())
    assert src.world_config == V2
