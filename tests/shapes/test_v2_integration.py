"""The Shapes tools read a v2 world from a model's meta: the probe set, the shapes pipeline plug-in's text length."""
import torch

from fastlight.shapes import text, world as shapes
from fastlight.shapes.probe import probe_set


def test_probe_set_follows_a_v2_meta():
    meta_world = shapes.world_from_name("v2", num_frames=9).to_dict()
    world, clips, swapped, x0, _ = probe_set(meta_world, n=4)
    assert world.name == "v2" and world.max_objects == 3
    assert x0.shape == (4, 3, 9, 64, 64)
    assert all(len(c.objects) == 1 and c.objects[0].direction != "still" for c in clips)
    assert text.encode([c.prompt for c in clips], world).shape == (4, 3, text.TEXT_DIM)
    assert [s.objects[0].direction for s in swapped] != [c.objects[0].direction for c in clips]


def test_probe_set_of_v1_meta_is_unchanged_by_the_v2_world():
    world, clips, _, x0, _ = probe_set({"size": 24, "num_frames": 8}, n=3)
    assert world.name == "v1" and x0.shape == (3, 3, 8, 24, 24)
    assert text.encode([c.prompt for c in clips], world).shape == (3, 2, text.TEXT_DIM)
    before = shapes.WorldConfig(size=24, num_frames=8, p_two_objects=0.0)  # how the probe built its world before v2
    gen, expect = torch.Generator().manual_seed(987_654), []
    while len(expect) < 3:
        c = shapes.sample_clip(gen, before)
        if c.objects[0].direction != "still":
            expect.append(c)
    assert [c.prompt for c in clips] == [c.prompt for c in expect]
    assert torch.equal(x0, shapes.render_batch(expect, before))
