"""The Shapes VAE's clip samplers (fastlight/shapes/clips.py) and its held-out measurement
(benchmarks/vae_oracle.py, benchmarks/train_shapes_vae.py's loss pieces)."""
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fastlight.errors import InputError
from fastlight.shapes.clips import FreeObject, ShapesClips, sample_edge_clips
from fastlight.shapes.world import render, WorldConfig

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:  # train_shapes_vae imports vae_oracle by name
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_edge_clips_are_a_pure_function_of_the_seed_and_reach_past_the_borders():
    a, b = sample_edge_clips(11, 200), sample_edge_clips(11, 200)
    assert a == b and a != sample_edge_clips(12, 200)
    objs = [o for c in a for o in c.objects]
    assert {len(c.objects) for c in a} == {1, 2, 3}
    assert all(isinstance(o, FreeObject) and 0.25 <= o.speed_px <= 3.5 for o in objs)
    outside = [o for o in objs if not (0 <= o.x0_px <= 64 and 0 <= o.y0_px <= 64)]
    assert len(outside) > 10  # some start (partly) outside the canvas
    assert all(-o.radius_px <= o.x0_px <= 64 + o.radius_px for o in objs)
    assert max(o.speed_px for o in objs) > 3.0
    for c in a:  # apart in the first frame
        for i, o in enumerate(c.objects):
            for p in c.objects[:i]:
                assert math.hypot(o.x0_px - p.x0_px, o.y0_px - p.y0_px) >= o.radius_px + p.radius_px + 0.5


def test_free_object_moves_at_its_own_speed_and_renders_clipped_not_wrapped():
    o = FreeObject("red", "square", 8.0, 60.0, 32.0, "right", "quickly", 3.0)
    assert o.velocity_px == (3.0, 0.0) and o.centre_px(4) == (72.0, 32.0)
    from fastlight.shapes.world import Clip
    v = render(Clip((o,)), WorldConfig(size=64, num_frames=9))  # leaves through the right border
    red = (v[0] > 0.5) & (v[1] < -0.5)
    assert red[0, :, 50:].any() and not red[0, :, :40].any()
    assert not red[-1].any()  # gone by the last frame, and nothing at the left border


def test_shapes_clips_samplers():
    with pytest.raises(InputError, match="sampler"):
        ShapesClips(sampler="nope")
    v1 = ShapesClips(num_frames=5)
    assert torch.equal(v1.render(3, 2), ShapesClips(num_frames=5, sampler="v1").render(3, 2))
    mix = ShapesClips(num_frames=5, sampler="mix")
    assert mix.clips(4, 3) == v1.clips(4, 3)  # even seeds: today's world
    assert mix.clips(5, 3) == ShapesClips(sampler="edge").clips(5, 3)
    assert mix.render(5, 2).shape == (2, 3, 5, 64, 64)


def test_for_vae_reads_the_sampler(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"world": {"size": 64, "num_frames": 9, "sampler": "mix"}}))
    assert ShapesClips.for_vae(tmp_path).sampler == "mix"
    (tmp_path / "manifest.json").write_text(json.dumps({"world": {"size": 64}}))
    assert ShapesClips.for_vae(tmp_path).sampler == "v1"


def test_oracle_measurement_passes_a_perfect_autoencoder_and_fails_a_blank_one():
    vo = _load("vae_oracle")
    perfect = SimpleNamespace(encode=lambda x: SimpleNamespace(latent_dist=SimpleNamespace(mean=x)),
                              decode=lambda z: SimpleNamespace(sample=z))
    res = vo.score_set(perfect, "edge", 9, 123, 4)
    assert res["psnr_db"] > 100 and res["colour_kept"] == 1.0 and res["colour_kept_frame0"] == 1.0
    assert res["direction_ok"] == 1.0 and res["direction_judged"] > 0 and res["ghost_clips"] == 0
    blank = SimpleNamespace(encode=perfect.encode, decode=lambda z: SimpleNamespace(sample=torch.full_like(z, -0.76)))
    res = vo.score_set(blank, "v1", 5, 123, 4)
    assert res["colour_kept"] == 0.0 and res["direction_ok"] == 0.0 and res["psnr_db"] < 20


def test_training_loss_weights_frames_and_objects():
    tv = _load("train_shapes_vae")
    w = tv.frame_weights(5, 3.0)
    assert torch.allclose(w, torch.tensor([3.0, 1, 1, 1, 1]) / 7)
    assert tv.frame_weights(1, 3.0).tolist() == [1.0]
    x = tv.train_clips(0, 1, 5)  # seed 0: today's world
    y = x.clone()
    y[:, :, 2] += 0.1  # an error in frame 2 only
    l1, mse = tv.frame_losses(y, x, 10.0)
    assert l1.shape == (5,) and l1[2] == pytest.approx(0.1, rel=1e-4) and l1[[0, 1, 3, 4]].abs().max() == 0
    assert mse[2] == pytest.approx(0.01, rel=1e-3)


def test_identity_time_convs_pass_the_newest_frame_through(vae_cfg):
    from diffusers import AutoencoderKLWan

    tv = _load("train_shapes_vae")
    vae = AutoencoderKLWan(**vae_cfg)
    assert tv.identity_time_convs(vae) == 4  # 2 temporal downsamplers + 2 temporal upsamplers
    enc = vae.encoder.down_blocks[3]  # a WanResample (downsample3d)
    x = torch.randn(1, enc.time_conv.weight.shape[1], 3, 2, 2)
    assert torch.allclose(enc.time_conv(x), x[:, :, 2:])  # stride 2 over [cache, f1, f2] -> f2
    up = vae.decoder.up_blocks[0].upsamplers[0]
    c = up.time_conv.weight.shape[1]
    x = torch.randn(1, c, 2, 2, 2)
    y = up.time_conv(x)  # causal, zero-padded: frame t -> two copies of frame t
    assert torch.allclose(y[:, :c], x) and torch.allclose(y[:, c:], x)
