"""The Shapes VAE's clip samplers (fastlight/shapes/clips.py), its held-out measurement
(benchmarks/vae_oracle.py) and its training script (benchmarks/train_shapes_vae.py: loss pieces, the
train stream, a few steps on a tiny config and the manifest they write)."""
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fastlight.data.source import stream_seed
from fastlight.errors import InputError
from fastlight.shapes import bench
from fastlight.shapes.clips import FreeObject, ShapesClips, sample_edge_clips, v2_stream_clips, v2_world
from fastlight.shapes.source import ShapesSource
from fastlight.shapes.world import WORLDS, WorldConfig, render, render_batch, sample_clips

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
    v2 = ShapesClips(num_frames=9, sampler="v2")
    world = v2.world()
    assert world.name == "v2" and (world.size, world.num_frames, world.radius_min_px, world.radius_max_px) == (64, 9, 7, 10)
    assert v2.clips(5, 3) == sample_clips(5, 3, WORLDS["v2"]) and v2.render(5, 2).shape == (2, 3, 9, 64, 64)


def test_v2_stream_clips_are_the_v2_shapes_source_batches():
    b = ShapesSource(batch_size=3, seed=4, stream="train", world="v2", num_frames=9, image=False).batch(7)
    clips = v2_stream_clips(4, "shapes/train", 7, 3)
    assert [c.prompt for c in clips] == b["prompts"]
    assert torch.equal(render_batch(clips, v2_world(9)), b["x0"])
    assert torch.equal(render_batch(clips, v2_world(5)), b["x0"][:, :, :5])  # shorter = the first frames


def test_training_clips_come_from_the_train_stream_and_the_held_out_sets_from_validation():
    tv, vo = _load("train_shapes_vae"), _load("vae_oracle")
    assert tv.TRAIN_STREAM == "shapes/train" and vo.SPLIT == "validation"
    x = tv.train_clips(0, 3, 2, 9)
    assert torch.equal(x, render_batch(v2_stream_clips(0, "shapes/train", 3, 2), v2_world(9)))
    # every clip is drawn from its own stream seed: training (any run seed 0-3, steps, rows) never
    # draws a held-out seed (ShapesBench validation / test cases)
    train = {stream_seed(s, "shapes/train", k, r) for s in range(4) for k in range(1000) for r in range(8)}
    held = {stream_seed(bench.SHAPESBENCH_SEED, f"shapes/{split}", 0, i) for split in ("validation", "test")
            for i in range(2000)}
    assert len(train) == 4 * 1000 * 8 and not train & held
    # the two held-out sets: validation cases 0-23 (9 frames) and 1000-... (17 frames), other clips than
    # each other and than the first training steps
    a, b = vo.heldout_cases(9, 0, 24), vo.heldout_cases(17, 1000, 8)
    assert [c.index for c in b] == list(range(1000, 1008)) and b[0].split == "validation"
    full = bench.case_clips(1008, v2_world(17), split="validation")
    assert [c.clip for c in a] == full[:24] and [c.clip for c in b] == full[1000:]
    prompts = {c.clip for c in a} | {c.clip for c in b}
    assert len(prompts) == 32
    # a VAE chosen on validation is reported on test cases: other clips
    t = vo.heldout_cases(9, 0, 24, "test")
    assert t[0].split == "test" and not {c.clip for c in t} & {c.clip for c in a}
    with pytest.raises(ValueError, match="split"):
        vo.heldout_cases(9, 0, 2, "train")
    seen = {c for k in range(16) for c in v2_stream_clips(0, "shapes/train", k, 8)}
    assert not prompts & seen


def test_for_vae_reads_the_sampler(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"world": {"size": 64, "num_frames": 9, "sampler": "mix"}}))
    assert ShapesClips.for_vae(tmp_path).sampler == "mix"
    (tmp_path / "manifest.json").write_text(json.dumps({"world": {"size": 64}}))
    assert ShapesClips.for_vae(tmp_path).sampler == "v1"


def test_oracle_measurement_passes_a_perfect_autoencoder_and_fails_a_blank_one():
    vo = _load("vae_oracle")
    perfect = SimpleNamespace(encode=lambda x: SimpleNamespace(latent_dist=SimpleNamespace(mean=x)),
                              decode=lambda z: SimpleNamespace(sample=z))
    res = vo.score_set(perfect, 9, 0, 4)
    assert res["psnr_db"] > 100 and res["colour_kept"] == 1.0 and res["colour_kept_frame0"] == 1.0
    o = res["oracle"]
    assert o["direction"]["value"] == res["ideal"]["direction"]["value"] and o["num_ghost_clips"] == 0
    assert o["num_objects"] >= 4 and o["direction"]["interval"]["num_cases"] == 4
    assert res["colour_kept_frame0_interval"]["low"] == 1.0 and res["stream"] == "shapes/validation"
    assert vo.summary({"v2-9": res})["v2-9"]["psnr_db"] > 100
    blank = SimpleNamespace(encode=perfect.encode, decode=lambda z: SimpleNamespace(sample=torch.full_like(z, -0.76)))
    res = vo.score_set(blank, 5, 0, 4)
    assert res["colour_kept"] == 0.0 and res["oracle"]["direction"]["value"] == 0.0 and res["psnr_db"] < 20
    assert not res["bar_ok"]
    assert res["ideal"]["colour"]["value"] > 0.95  # the true clips themselves pass


def test_bar_needs_every_part_and_no_ghost_clip():
    vo = _load("vae_oracle")
    good = {k: {"value": 0.97} for k in ("direction", "colour", "speed_within_10pct")} | {"num_ghost_clips": 0}
    assert vo.bar_ok(good)
    assert not vo.bar_ok(good | {"num_ghost_clips": 1})
    assert not vo.bar_ok(good | {"speed_within_10pct": {"value": 0.9}})
    assert not vo.bar_ok(good | {"direction": {"value": None}})


def test_training_loss_weights_frames_and_objects():
    tv = _load("train_shapes_vae")
    w = tv.frame_weights(5, 2.0)
    assert torch.allclose(w, torch.tensor([2.0, 1, 1, 1, 1]) / 6)
    assert tv.frame_weights(1, 2.0).tolist() == [1.0]
    x = tv.train_clips(0, 0, 1, 5)
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


def test_a_few_steps_on_a_tiny_config_write_the_manifest_and_continue(tmp_path, monkeypatch):
    from diffusers import AutoencoderKLWan

    tv = _load("train_shapes_vae")
    monkeypatch.setattr(tv, "VAE_CONFIG", dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                                               temperal_downsample=[False, True, True]))
    out = tmp_path / "vae"
    common = ["--threads", "1", "--eval-clips", "1", "--eval-sets", "v2-9", "--repeats", "0", "--stats-clips", "4",
              "--frames", "1,5", "--out", str(out)]
    assert tv.main(["--steps", "2", "--lr", "1e-3"] + common) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["world"] == {"world": "v2", "size": 64, "num_frames": 9, "radius_px": [7.0, 10.0], "sampler": "v2"}
    assert ShapesClips.for_vae(out).world().name == "v2"
    ph = man["phases"][0]
    assert ph["steps"] == 2 and ph["time_conv_init"] == "identity" and ph["frames"] == [1, 5]
    assert ph["sampler"] == "v2 world, stream shapes/train of seed 0" and ph["command"].startswith("benchmarks/")
    assert len(ph["load_average_1min_start_end"]) == 2 and ph["cpus_allowed"] and "not alone" in ph["machine"]
    assert man["train"]["frame0_weight"] == 2.0 and man["train"]["steps"] == 2
    assert set(man["held_out"]) >= {"v2-9", "psnr_db"} and man["held_out"]["v2-9"]["frames"] == 9
    assert man["held_out"]["v2-9"]["stream"] == "shapes/validation" and man["held_out"]["v2-9"]["clips"] == 1
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["latents_std"]) == 4 and cfg["latents_std"] != [1.0] * 4  # recomputed (train stream)
    from safetensors.torch import load_file
    weights = load_file(out / "diffusion_pytorch_model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert AutoencoderKLWan.from_pretrained(out).config.z_dim == 4
    # a second phase continues the step count and the bookkeeping
    assert tv.main(["--steps", "1", "--lr", "1e-4", "--init", str(out)] + common) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert [p["steps"] for p in man["phases"]] == [2, 1] and man["train"]["steps"] == 3
    assert man["phases"][1]["time_conv_init"] == "from --init" and man["command"].count("&&") == 1
    assert [r["step"] for r in man["loss_curve"]] == [1, 3]
    # a decoder-only phase (--freeze-encoder) leaves every encoder weight, and so every latent, as it was
    before = load_file(out / "diffusion_pytorch_model.safetensors")
    stats = json.loads((out / "config.json").read_text())["latents_mean"]
    assert tv.main(["--steps", "2", "--lr", "1e-2", "--init", str(out), "--freeze-encoder"] + common) == 0
    after = load_file(out / "diffusion_pytorch_model.safetensors")
    frozen = [k for k in before if k.split(".")[0] in tv.ENCODER_MODULES]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    man = json.loads((out / "manifest.json").read_text())
    assert man["phases"][2]["trained"] == "decoder and post_quant_conv (encoder frozen)"
    assert json.loads((out / "config.json").read_text())["latents_mean"] == stats  # the same latents
    with pytest.raises(SystemExit):  # a fresh VAE has no encoder worth freezing
        tv.main(["--steps", "1", "--freeze-encoder"] + common)
