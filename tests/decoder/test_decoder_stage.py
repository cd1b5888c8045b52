"""The pieces of `fastlight run`'s light-decoder stage (fastlight/decoder/stage.py), its export
(export_light_decoder) and the evaluation's decoder choice, on the tiny Wan 2.1 pipeline."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fastlight.data.latents import _Vae
from fastlight.decoder.prune import count, load_vae
from fastlight.decoder.prune_vae import prune_vae
from fastlight.decoder.stage import build_light_decoder, decoder_settings, distill_config, enabled, unsupported
from fastlight.errors import ConfigError, InputError, ModelError
from fastlight.evaluate.real import _check_decoders, frame_psnr
from fastlight.export.to_diffusers import export_light_decoder


def _vae_config(tmp_path, name, **extra):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": name, **extra}))
    return folder


def test_unsupported_vaes_are_stated(tmp_path):
    assert unsupported(_vae_config(tmp_path, "AutoencoderKLWan")) is None
    hy = unsupported(_vae_config(tmp_path, "AutoencoderKLHunyuanVideo"))
    assert hy.startswith("light decoder: not supported for AutoencoderKLHunyuanVideo")
    (tmp_path / "wan22").mkdir()
    (tmp_path / "wan22" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", "is_residual": True}))
    assert "is_residual=true" in unsupported(tmp_path / "wan22")


def test_decoder_settings():
    for off in (None, "none", False):
        assert not enabled(decoder_settings(off))
    assert not enabled(decoder_settings({})) and not enabled(decoder_settings({"enabled": False, "steps": 3}))
    assert enabled(decoder_settings({"steps": 3}))
    assert enabled(decoder_settings({"head": "patch2", "res_blocks": 0}))
    for bad, needle in (({"stepz": 1}, "unknown key(s) ['stepz']"), ({"prune_ratio": 1.5}, "prune_ratio"),
                        ({"calib": 0}, "calib"), ({"enabled": "yes"}, "enabled"), ("some", "mapping"),
                        ({"head": "pixelshuffle"}, "decoder.head must be one of full, patch2"),
                        ({"res_blocks": -1}, "decoder.res_blocks"), ({"res_blocks": True}, "decoder.res_blocks")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            decoder_settings(bad)


def test_distill_config_takes_the_stage_folders(tmp_path):
    cfg = distill_config({"prune_ratio": 0.5, "steps": 5, "lr": 1e-3}, tmp_path / "vae", tmp_path / "shards",
                         tmp_path / "5_decoder", seed=3, threads=1)
    assert (cfg.out, cfg.student, cfg.latents) == (str(tmp_path / "5_decoder" / "distill"),
                                                   str(tmp_path / "5_decoder" / "pruned"), str(tmp_path / "shards"))
    assert (cfg.steps, cfg.lr, cfg.seed, cfg.data_seed, cfg.threads) == (5, 1e-3, 3, 3, 1)
    with pytest.raises(ConfigError, match="lr must be > 0"):
        distill_config({"lr": 0.0}, tmp_path, tmp_path, tmp_path)


@pytest.fixture(scope="module")
def light(tiny_pipeline, tmp_path_factory):
    """(the tiny Wan 2.1 pipeline, its VAE pruned to a light decoder on random normalised latents)."""
    pipe = tiny_pipeline("wan21-t2v")
    root = tmp_path_factory.mktemp("light")
    z = torch.randn(2, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    save_file({"latents": z}, str(root / "latents.safetensors"))
    prune_vae(pipe / "vae", 0.75, root / "pruned", calib=2, latents=str(root / "latents.safetensors"), progress=False)
    return pipe, root / "pruned"


def test_prune_the_tiny_wan21_vae_whose_upsamplers_halve_widths(light):
    """Its up blocks' upsamplers output half their stream's width (4 of base 8): each group's pruned width comes
    from the smaller config's own structure, and the result is a stock AutoencoderKLWan decoding the same shapes."""
    pipe, pruned = light
    full, small = load_vae(pipe / "vae"), load_vae(pruned)
    man = json.loads((pruned / "manifest.json").read_text())
    dim = small.config.decoder_base_dim
    assert dim == man["config_change"]["decoder_base_dim"]["to"] < 8 and count(small.decoder) <= 0.25 * count(full.decoder)
    widths = {len(v) for k, v in man["kept_channels"].items() if k.endswith("upsamplers.0.out")}
    assert widths == {dim // 2}  # the halved groups, pruned to the smaller config's own width
    assert man["decoder_params"] == count(small.decoder) and man["params"] == count(small)
    z = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert small.decode(z).sample.shape == full.decode(z).sample.shape == (1, 3, 5, 32, 32)


def test_export_light_decoder(light, tmp_path):
    from diffusers import WanPipeline

    pipe, pruned = light
    out = export_light_decoder(pipe, pruned, tmp_path / "light")
    loaded = WanPipeline.from_pretrained(str(out))
    assert count(loaded.vae.decoder) == json.loads((pruned / "manifest.json").read_text())["decoder_params"]
    assert (out / "transformer").is_dir() and (out / "text_encoder").is_dir()
    info = json.loads((out / "fastlight_export.json").read_text())["vae"]
    assert info["decoder_params"] == count(loaded.vae.decoder) and info["decoder_base_dim"] < 8
    video = loaded("a red circle", num_inference_steps=2, num_frames=5, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(0)).frames[0]
    assert np.asarray(video).shape == (5, 32, 32, 3)
    # a manifest that does not match what the stock class loads is refused (one line), nothing is written
    bad = tmp_path / "bad"
    shutil.copytree(pruned, bad)
    man = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**man, "decoder_params": man["decoder_params"] + 1}))
    with pytest.raises(ModelError, match="its manifest says"):
        export_light_decoder(pipe, bad, tmp_path / "light2")
    assert not (tmp_path / "light2").exists()
    with pytest.raises(ModelError, match="not a light AutoencoderKLWan"):
        export_light_decoder(pipe, pipe / "transformer", tmp_path / "light3")


def test_evaluation_decoder_rows_are_checked(light, tmp_path):
    pipe, pruned = light
    models = {"teacher": None, "student": None}
    assert _check_decoders({"student_light": ("student", pruned)}, models) == {"student_light": ("student", pruned)}
    assert _check_decoders(None, models) == {}
    for bad, err in (({"student": ("student", pruned)}, InputError), ({"x": ("nobody", pruned)}, InputError),
                     ({"x": ("student", tmp_path)}, ModelError)):
        with pytest.raises(err):
            _check_decoders(bad, models)


def test_frame_psnr():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    assert frame_psnr(a, b) == 100.0
    b[0, 0, 0, 0] = 255
    assert frame_psnr(a, b) == pytest.approx(10 * np.log10(96))  # one of 96 values off by 255
    with pytest.raises(ModelError):
        frame_psnr(a, b[:1])


def test_stage_builds_the_patch2_light_decoder_and_exports_it(tiny_pipeline, tmp_path):
    """decoder: {head: patch2, res_blocks: 0}: the stage prunes and distils that layout (counts asserted against
    the stock class), the summary and manifests record it, the export runs in the stock WanPipeline, and a
    kept OUT/pruned of another layout is refused in one line."""
    from diffusers import AutoencoderKLWan, WanPipeline

    pipe = tiny_pipeline("wan21-t2v")
    z = torch.randn(3, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    save_file({"latents": z}, str(tmp_path / "latents.safetensors"))
    settings = decoder_settings({"prune_ratio": 0.8, "head": "patch2", "res_blocks": 0, "calib": 2, "steps": 2,
                                 "batch_size": 2, "save_every": 2, "warmup_steps": 0, "lr": 1e-3})
    summary = build_light_decoder(pipe / "vae", tmp_path / "latents.safetensors", tmp_path / "5_decoder", settings,
                                  threads=1, progress=False)
    assert (summary["head"], summary["res_blocks"], summary["encoder"]) == ("patch2", 0, "placeholder")
    assert summary["achieved_ratio"] >= 0.8 and summary["config_change"]["patch_size"] == {"from": None, "to": 2}
    model = AutoencoderKLWan.from_pretrained(summary["decoder"])
    assert count(model.decoder) == summary["decoder_params"] <= 0.2 * summary["decoder_params_before"]
    assert model.config.num_res_blocks == 0 and model.config.patch_size == 2
    man = json.loads((tmp_path / "5_decoder" / "distill" / "model" / "manifest.json").read_text())
    assert man["pruning"]["head"] == "patch2" and man["decoder_params"] == summary["decoder_params"]
    out = export_light_decoder(pipe, summary["decoder"], tmp_path / "light")
    info = json.loads((out / "fastlight_export.json").read_text())["vae"]
    assert info["head"] == "patch2" and info["encoder"] == "placeholder" and "decode only" in info["use"]
    loaded = WanPipeline.from_pretrained(str(out))
    assert count(loaded.vae.decoder) == summary["decoder_params"]
    video = loaded("a red circle", num_inference_steps=2, num_frames=5, height=32, width=32, output_type="np",
                   generator=torch.Generator().manual_seed(0)).frames[0]
    assert np.asarray(video).shape == (5, 32, 32, 3)
    # the decode-only VAE never encodes (shards / TI2V first frames): one line naming the full VAE instead
    light_vae = _Vae(out / "vae", "cpu", torch.float32)
    with pytest.raises(ModelError, match="decode-only light VAE"):
        light_vae.encode(torch.zeros(1, 3, 5, 32, 32))
    assert _Vae(pipe / "vae", "cpu", torch.float32).encode(torch.zeros(1, 3, 5, 32, 32)).shape[1] == 16
    with pytest.raises(ConfigError, match="was pruned with"):
        build_light_decoder(pipe / "vae", tmp_path / "latents.safetensors", tmp_path / "5_decoder",
                            decoder_settings({**settings, "head": "full"}), threads=1, progress=False)
