"""FastWanDecoder (fastlight/decoder/fast.py): shapes, causality, the pipeline contract, distillation
(`student=fast`), the decoder stage, the export as a stock WanPipeline's vae, and the decode-only _Vae."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fastlight.cli import main
from fastlight.data.latents import _Vae, wan_vae_factors
from fastlight.decoder.distill import load_light_decoder
from fastlight.decoder.fast import FastWanDecoder, TimeConv
from fastlight.decoder.stage import build_light_decoder, decoder_settings
from fastlight.errors import ConfigError, DataError, ModelError
from fastlight.evaluate.real import frame_psnr
from fastlight.evaluate.real_samples import decode_latents
from fastlight.export.to_diffusers import export_light_decoder
from fastlight.models.load import import_pipeline_components
from tests.entry_points import write_dist_info

PIPELINE_FIELDS = ("z_dim", "latents_mean", "latents_std", "scale_factor_temporal", "scale_factor_spatial")


@pytest.fixture
def registered_fast(tmp_path, monkeypatch):
    """pyproject's `fast-wan-decoder` pipeline-component entry point, for an install whose metadata predates it
    (a dist-info on sys.path for this test only)."""
    write_dist_info(tmp_path / "ep", "fastlight-fast-decoder-test", "fastlight.pipeline_components",
                    ["fast-wan-decoder = fastlight.decoder.fast:FastWanDecoder"])
    monkeypatch.syspath_prepend(str(tmp_path / "ep"))


def _fresh_process_load(folder, ep_dir) -> list[str]:
    """In one fresh process: the stock WanPipeline.from_pretrained alone ("refused": diffusers imports no module a
    folder names), the components fastlight imports, then the stock load again ("loaded")."""
    code = ("import sys; from diffusers import WanPipeline\n"
            "def load():\n"
            "    try:\n        WanPipeline.from_pretrained(sys.argv[1]); print('loaded')\n"
            "    except ValueError as e:\n        print('refused' if 'has not been imported' in str(e) else e)\n"
            "load()\n"
            "from fastlight.models.load import import_pipeline_components\n"
            "print(*import_pipeline_components(sys.argv[1]))\n"
            "load()\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ep_dir)])}
    run = subprocess.run([sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True,
                         timeout=300)
    return run.stdout.split()


def _teacher_config(tiny_pipeline) -> dict:
    return json.loads((tiny_pipeline("wan21-t2v") / "vae" / "config.json").read_text())


@pytest.mark.parametrize("t", [1, 2, 3])
def test_frame_count_and_shape(t):
    """1 + 4 (T - 1) frames (the Wan VAE's count), 8x the latent size, values in [-1, 1]."""
    torch.manual_seed(0)
    dec = FastWanDecoder(z_dim=4, width=2).eval()
    with torch.no_grad():
        x = dec.decode(torch.randn(2, 4, t, 2, 3) * 3).sample
    assert x.shape == (2, 3, 1 + 4 * (t - 1), 16, 24)
    assert x.abs().max() <= 1.0
    assert dec(torch.zeros(1, 4, t, 1, 1)).shape == (1, 3, 1 + 4 * (t - 1), 8, 8)


def test_factors_come_from_the_teacher_config():
    """Temporal factor from temperal_downsample (2 per True), spatial from dim_mult (and patch_size)."""
    cfg = {"z_dim": 4, "latents_mean": [0.0] * 4, "latents_std": [1.0] * 4, "dim_mult": [1, 2, 4],
           "temperal_downsample": [False, True]}
    assert wan_vae_factors(cfg) == (2, 4)
    dec = FastWanDecoder.from_teacher(cfg, width=2)
    assert (dec.config.temporal_factor, dec.config.spatial_factor) == (2, 4)
    with torch.no_grad():
        assert dec.decode(torch.randn(1, 4, 3, 2, 2)).sample.shape == (1, 3, 5, 8, 8)  # 1 + 2 (3 - 1) frames
    with pytest.raises(ValueError, match="power of 2"):
        FastWanDecoder(spatial_factor=6)
    with pytest.raises(ModelError, match="decode only"):
        dec.encode(torch.zeros(1, 3, 5, 8, 8))


def test_time_conv_is_a_causal_conv3d():
    """TimeConv (one Conv2d on the stacked time shifts) equals a Conv3d on the clip front-padded with frame 0."""
    torch.manual_seed(0)
    tc = TimeConv(3, 5)
    x = torch.randn(2, 3, 4, 6, 6)
    w3 = tc.conv.weight.view(5, 3, 3, 3, 3).permute(0, 2, 1, 3, 4)  # (out, kt, in, 3, 3) -> (out, in, kt, 3, 3)
    padded = torch.cat([x[:, :, :1].expand(-1, -1, 2, -1, -1), x], 2)
    with torch.no_grad():
        ref = torch.nn.functional.conv3d(padded, w3, tc.conv.bias, padding=(0, 1, 1))
        assert torch.allclose(tc(x), ref, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(latent_blocks=2), dict(spatial_blocks=2), dict(time_levels=2),
                                dict(latent_blocks=0, time_levels=3)])
def test_causality(kw):
    """Latent frame 2 makes frames 5..8: changing it leaves frames 0..4 unchanged; frame 0 sees latent frame 0 only;
    at any depth and with time-mixing levels (causal at frame rate: TimeBlocks, the per-frame levels Block2d)."""
    from fastlight.decoder.fast import Block2d, TimeBlock

    torch.manual_seed(0)
    dec = FastWanDecoder(z_dim=4, width=2, **kw).eval()
    kinds = [[type(b) for b in level] for level in dec.levels]
    tl, nb = kw.get("time_levels", 0), kw.get("spatial_blocks", 1)
    assert kinds == [[TimeBlock if k < tl else Block2d] * nb for k in range(3)]
    assert len(dec.latent) == kw.get("latent_blocks", 1)
    z = torch.randn(1, 4, 3, 2, 2)
    z2, z1 = z.clone(), z.clone()
    z2[:, :, 2] += 1.0
    z1[:, :, 1] += 1.0
    with torch.no_grad():
        a, b, c = dec.decode(z).sample, dec.decode(z2).sample, dec.decode(z1).sample
    assert a.shape == (1, 3, 9, 16, 16)
    assert torch.equal(a[:, :, :5], b[:, :, :5]) and not torch.equal(a[:, :, 5:], b[:, :, 5:])
    assert torch.equal(a[:, :, :1], c[:, :, :1]) and not torch.equal(a[:, :, 1:5], c[:, :, 1:5])


def test_time_levels_mix_frames_within_a_latent_frame():
    """With time_levels > 0 a spatial level sees the previous frames: its output for frame f changes when only the
    input of frame f - 1 changes (a per-frame level would not)."""
    torch.manual_seed(0)
    for tl, mixes in ((0, False), (1, True)):
        dec = FastWanDecoder(z_dim=4, width=2, time_levels=tl).eval()
        x = torch.randn(3, 8, 2, 2)  # (B F, C_0, h, w): 3 frames of one clip, folded
        y = x.clone()
        y[1] += 1.0
        with torch.no_grad():
            fa = dec.levels[0](x.view(1, 3, 8, 2, 2).transpose(1, 2)) if tl else dec.levels[0](x)
            fb = dec.levels[0](y.view(1, 3, 8, 2, 2).transpose(1, 2)) if tl else dec.levels[0](y)
        frame2 = (lambda f: f[:, :, 2]) if tl else (lambda f: f[2])
        assert torch.equal(frame2(fa), frame2(fb)) is not mixes


def test_bad_layout_is_refused():
    with pytest.raises(ValueError, match="time_levels in 0..3"):
        FastWanDecoder(z_dim=4, width=2, time_levels=4)
    with pytest.raises(ValueError, match="latent_blocks and spatial_blocks must be >= 0"):
        FastWanDecoder(z_dim=4, width=2, spatial_blocks=-1)


def test_save_load_round_trip_and_the_fields_wan_pipeline_reads(tiny_pipeline, tmp_path):
    """The config carries what WanPipeline reads from vae.config, copied from the teacher; a saved decoder loads back
    (FastWanDecoder.from_pretrained and load_light_decoder) with the same output; a stock WanPipeline takes it."""
    from diffusers import WanPipeline

    cfg = _teacher_config(tiny_pipeline)
    torch.manual_seed(0)
    dec = FastWanDecoder.from_teacher(cfg, width=2).eval()
    for key in PIPELINE_FIELDS:
        assert dec.config[key] == cfg[key], key
    assert dec.dtype == torch.float32
    dec.save_pretrained(tmp_path / "fast", safe_serialization=True)
    assert (tmp_path / "fast" / "diffusion_pytorch_model.safetensors").is_file()
    back = FastWanDecoder.from_pretrained(tmp_path / "fast").eval()
    assert isinstance(load_light_decoder(tmp_path / "fast"), FastWanDecoder)
    z = torch.randn(1, 16, 2, 2, 2)
    with torch.no_grad():
        assert torch.equal(dec.decode(z).sample, back.decode(z, return_dict=False)[0])
    full = WanPipeline.from_pretrained(str(tiny_pipeline("wan21-t2v")))
    pipe = WanPipeline(tokenizer=full.tokenizer, text_encoder=full.text_encoder, transformer=full.transformer,
                       scheduler=full.scheduler, vae=back)
    assert (pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial) == (4, 8)


def test_distill_two_steps_on_the_tiny_pipeline_vae(tiny_pipeline, tmp_path):
    """`distill-decoder student=fast`: 2 steps on the one loop, feature matching on the stage outputs of the
    teacher's shapes (latent stage <-> mid block, the s/2 level <-> up block 1), manifest naming the loader."""
    vae = tiny_pipeline("wan21-t2v") / "vae"
    f = tmp_path / "latents.safetensors"
    save_file({"latents": torch.randn(3, 16, 2, 2, 2, generator=torch.Generator().manual_seed(0))}, str(f))
    out = tmp_path / "fast"
    assert main(["distill-decoder", f"teacher={vae}", "student=fast", "fast_width=2", f"latents={f}", f"out={out}",
                 "steps=2", "batch_size=2", "log_every=1", "threads=1"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    assert metrics[0]["loss_feature"] > 0
    man = json.loads((out / "model" / "manifest.json").read_text())
    assert man["kind"] == "fast" and man["encoder"] == "none" and "FastWanDecoder.from_pretrained" in man["loader"]
    assert [s["student"] for s in man["feature_sites"]] == ["latent", "levels.2"]
    assert [s["teacher"] for s in man["feature_sites"]] == ["mid_block.resnets.1", "up_blocks.1.upsamplers.0"]
    dec = load_light_decoder(out / "model")
    assert isinstance(dec, FastWanDecoder) and man["decoder_params"] == sum(p.numel() for p in dec.parameters())
    assert man["layout"] == {"width": 2, "latent_blocks": 1, "spatial_blocks": 1, "time_levels": 0}
    assert main(["distill-decoder", f"teacher={vae}", "student=fast", "fast_width=0", f"latents={f}",
                 f"out={tmp_path / 'bad'}", "steps=1"]) == 2
    deep = tmp_path / "deep"
    assert main(["distill-decoder", f"teacher={vae}", "student=fast", "fast_width=2", "fast_latent_blocks=2",
                 "fast_spatial_blocks=2", "fast_time_levels=1", f"latents={f}", f"out={deep}", "steps=1",
                 "batch_size=2", "threads=1"]) == 0
    d = load_light_decoder(deep / "model")
    assert (d.config.latent_blocks, d.config.spatial_blocks, d.config.time_levels) == (2, 2, 1)
    assert json.loads((deep / "model" / "manifest.json").read_text())["decoder_params"] > man["decoder_params"]
    for bad in ("fast_time_levels=4", "fast_spatial_blocks=-1"):
        assert main(["distill-decoder", f"teacher={vae}", "student=fast", bad, f"latents={f}",
                     f"out={tmp_path / 'bad2'}", "steps=1"]) == 2
    assert "loss_edge" not in metrics[0]  # edge_weight 0 (the default): pixel L1 + features only
    for key, term in (("edge_weight", "loss_edge"), ("sharp_weight", "loss_sharp")):  # the extra loss terms
        run = tmp_path / term
        assert main(["distill-decoder", f"teacher={vae}", "student=fast", "fast_width=2", f"latents={f}",
                     f"out={run}", "steps=1", "batch_size=2", "log_every=1", "threads=1", f"{key}=0.5"]) == 0
        m = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
        assert m[term] > 0 and m["loss"] == pytest.approx(m["loss_l1"] + 0.1 * m["loss_feature"] + 0.5 * m[term],
                                                          rel=1e-4)
        assert main(["distill-decoder", f"teacher={vae}", "student=fast", f"latents={f}",
                     f"out={tmp_path / ('neg_' + key)}", "steps=1", f"{key}=-1"]) == 2


def test_edge_l1_is_the_gradient_difference():
    from fastlight.decoder.distill import edge_l1

    y = torch.zeros(1, 3, 2, 4, 4)
    assert edge_l1(y + 0.7, y) == 0  # a constant offset has no edges: pixel L1 sees it, edge L1 does not
    x = y.clone()
    x[..., :, 2:] = 1.0  # a vertical edge: one jump of 1 per row in x, none in y
    assert edge_l1(x, y).item() == pytest.approx(1 / 3)  # mean over the W - 1 = 3 differences
    assert edge_l1(x.transpose(-1, -2), y).item() == pytest.approx(1 / 3)


def test_sharpness_l1_penalises_blur_where_edge_l1_rewards_it():
    """The energy match is 0 for the same frames and > 0 for a blurred copy; shifting an edge by one pixel costs
    edge_l1 more than blurring it (why the edge term measured blurrier) but costs sharpness_l1 nothing."""
    from fastlight.decoder.distill import edge_l1, grad_energy, sharpness_l1

    y = torch.zeros(1, 3, 2, 8, 8)
    y[..., 4:] = 1.0  # one vertical edge
    blur = torch.nn.functional.avg_pool2d(y.view(-1, 1, 8, 8), 3, 1, 1, count_include_pad=False).view_as(y)
    shifted = torch.roll(y, 1, dims=-1)
    shifted[..., 0] = 0.0
    assert grad_energy(y).shape == (1, 2) and sharpness_l1(y, y) == 0
    assert sharpness_l1(blur, y) > 0.5 and sharpness_l1(shifted, y).item() == pytest.approx(0.0, abs=1e-6)
    assert edge_l1(shifted, y) > edge_l1(blur, y)


def test_decoder_settings_for_the_fast_student():
    assert decoder_settings({"student": "fast", "fast_width": 8})["student"] == "fast"
    with pytest.raises(ConfigError, match="decoder.student must be one of pruned, fast"):
        decoder_settings({"student": "tiny"})
    with pytest.raises(ConfigError, match="decoder.head must be one of"):  # still checked: a recipe may switch back
        decoder_settings({"student": "fast", "head": "patch3"})


def test_stage_builds_the_fast_decoder_and_the_stock_pipeline_generates_with_it(tiny_pipeline, tmp_path,
                                                                                  registered_fast):
    """decoder: {student: fast}: the stage distils a FastWanDecoder; the export names it in model_index.json, the
    stock WanPipeline loads the folder (after import_pipeline_components) and generates; the decode-only _Vae
    decodes like the full one (the evaluation's light-decoder row) and refuses to encode in one line."""
    from diffusers import WanPipeline

    pipe = tiny_pipeline("wan21-t2v")
    z = torch.randn(3, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    save_file({"latents": z}, str(tmp_path / "latents.safetensors"))
    settings = decoder_settings({"student": "fast", "fast_width": 2, "steps": 2, "batch_size": 2, "save_every": 2,
                                 "warmup_steps": 0, "prune_ratio": 0.75, "calib": 4})  # the recipe's pruning keys
    summary = build_light_decoder(pipe / "vae", tmp_path / "latents.safetensors", tmp_path / "5_decoder", settings,
                                  threads=1, progress=False)
    assert (summary["vae_class"], summary["student"], summary["encoder"]) == ("FastWanDecoder", "fast", "none")
    assert not (tmp_path / "5_decoder" / "pruned").exists()
    assert summary["ignored"] == ["calib", "prune_ratio"] and "prune_ratio" not in summary
    assert summary["decoder_params"] < summary["decoder_params_before"]
    out = export_light_decoder(pipe, summary["decoder"], tmp_path / "light")
    index = json.loads((out / "model_index.json").read_text())
    assert index["vae"] == ["fastlight.decoder.fast", "FastWanDecoder"]
    assert json.loads((pipe / "model_index.json").read_text())["vae"] == ["diffusers", "AutoencoderKLWan"]
    info = json.loads((out / "fastlight_export.json").read_text())["vae"]
    assert info["class"] == "FastWanDecoder" and info["encoder"] == "none" and "decode only" in info["use"]
    assert info["decoder_params"] == summary["decoder_params"]
    assert import_pipeline_components(out) == ["fast-wan-decoder"]
    assert _fresh_process_load(out, tmp_path / "ep") == ["refused", "fast-wan-decoder", "loaded"]
    loaded = WanPipeline.from_pretrained(str(out))
    assert isinstance(loaded.vae, FastWanDecoder)
    video = loaded("a red circle", num_inference_steps=2, num_frames=5, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(0)).frames[0]
    assert np.asarray(video).shape == (5, 32, 32, 3)
    # the evaluation's light row: decode through _Vae, frames comparable with the full VAE's
    light, full = _Vae(out / "vae", "cpu", torch.float32), _Vae(pipe / "vae", "cpu", torch.float32)
    assert (light.temporal, light.spatial) == (full.temporal, full.spatial) == (4, 8)
    zs = [z[i:i + 1] for i in range(2)]
    a, b = decode_latents(light, zs), decode_latents(full, zs)
    assert a[0].shape == b[0].shape == (5, 32, 32, 3) and 0 < frame_psnr(a[0], b[0]) < 100
    with pytest.raises(ModelError, match="decode-only light VAE .*FastWanDecoder, no encoder"):
        light.encode(torch.zeros(1, 3, 5, 32, 32))
    # a pruned-student stage folder is not silently reused for student: fast
    (tmp_path / "5b" / "pruned").mkdir(parents=True)
    with pytest.raises(ConfigError, match="student: fast"):
        build_light_decoder(pipe / "vae", tmp_path / "latents.safetensors", tmp_path / "5b", settings, threads=1,
                            progress=False)


def test_vae_names_an_unknown_class_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "SomeOtherDecoder"}))
    with pytest.raises(DataError, match="names class 'SomeOtherDecoder'.*pipeline_components"):
        _Vae(tmp_path, "cpu", torch.float32)


def test_cached_targets_match_the_teacher_and_run_it_once_per_pool_latent(tiny_pipeline, tmp_path, monkeypatch):
    """cache_targets: the same targets as decoding every step (up to batch-size rounding; features float16), the
    teacher runs only on pool latents not seen before; refused for a clip source."""
    from fastlight.decoder import distill
    from fastlight.decoder.distill import DecoderDistillConfig, DecoderDistillRecipe

    f = tmp_path / "latents.safetensors"
    save_file({"latents": torch.randn(3, 16, 2, 2, 2, generator=torch.Generator().manual_seed(0))}, str(f))
    kw = dict(teacher=str(tiny_pipeline("wan21-t2v") / "vae"), student="fast", fast_width=2, latents=str(f),
              batch_size=2, threads=1, out=str(tmp_path / "o"))
    plain, cached = (DecoderDistillRecipe(DecoderDistillConfig(**kw, cache_targets=c)) for c in (False, True))
    decoded = []
    real = distill.decode_with_features
    monkeypatch.setattr(distill, "decode_with_features", lambda vae, z, names: decoded.append(z.shape[0]) or
                        real(vae, z, names))
    for step in range(4):
        batch = cached.batch(step)
        a, fa = cached._cached_targets(batch["z"], batch["idx"].tolist())
        b, fb = plain._targets(batch["z"])
        assert torch.allclose(a, b, atol=1e-5)
        assert all(torch.allclose(x, y, rtol=1e-2, atol=1e-3) for x, y in zip(fa, fb))
    assert sum(decoded) - 4 * 2 == len(cached.cache) == 3  # each pool latent decoded once by the cached recipe
    with pytest.raises(ConfigError, match="cache_targets needs a latent pool"):
        DecoderDistillRecipe(DecoderDistillConfig(**{**kw, "latents": "shapes"}, cache_targets=True))
    small = DecoderDistillRecipe(DecoderDistillConfig(**kw, cache_targets=True, pool_size=2))  # the first 2 only
    assert small.pool.shape[0] == 2 and torch.equal(small.pool, cached.pool[:2])
    assert all(set(small.batch(step)["idx"].tolist()) <= {0, 1} for step in range(4))
    with pytest.raises(ConfigError, match="pool_size needs a latent pool"):
        DecoderDistillRecipe(DecoderDistillConfig(**{**kw, "latents": "shapes"}, pool_size=2))
