import json

import pytest
import torch
from safetensors.torch import save_file

from fastlight.cli import main
from fastlight.decoder.distill import load_light_decoder
from fastlight.decoder.tiny import TinyWanDecoder


@pytest.fixture(scope="module")
def teacher_and_pruned(tmp_path_factory, vae_cfg):
    from diffusers import AutoencoderKLWan

    root = tmp_path_factory.mktemp("distill")
    torch.manual_seed(0)
    AutoencoderKLWan(**vae_cfg).save_pretrained(root / "vae")
    (root / "vae" / "manifest.json").write_text(json.dumps({"world": {"size": 16, "num_frames": 5}}))
    assert main(["prune-decoder", str(root / "vae"), "--ratio", "0.5", "--out", str(root / "pruned"),
                 "--calib", "2"]) == 0
    return root


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_distill_pruned_resumes_and_loads_with_stock_class(teacher_and_pruned, tmp_path):
    from diffusers import AutoencoderKLWan

    root = teacher_and_pruned
    out = tmp_path / "run"
    args = ["distill-decoder", f"teacher={root / 'vae'}", f"student={root / 'pruned'}", f"out={out}",
            "batch_size=2", "save_every=2", "log_every=1", "lr=1e-3", "warmup_steps=0",
            "lr_schedule=constant"]  # a cosine schedule may not change steps on resume (test_loop)
    assert main(args + ["steps=2"]) == 0
    assert main(args + ["steps=4"]) == 0  # resumes from the step-2 checkpoint
    m = _metrics(out)
    assert [r["step"] for r in m] == [1, 2, 3, 4]
    assert {"loss_l1", "loss_feature", "psnr_vs_teacher_db"} <= set(m[0])
    man = json.loads((out / "model" / "manifest.json").read_text())
    assert man["kind"] == "pruned" and man["decoder_params"] < man["teacher_decoder_params"]
    light = AutoencoderKLWan.from_pretrained(out / "model").eval()  # the stock diffusers class
    assert light.config.decoder_base_dim < 4
    z = torch.randn(1, 4, 2, 2, 2)
    with torch.no_grad():
        assert light.decode(z).sample.shape == (1, 3, 5, 16, 16)
    assert type(load_light_decoder(out / "model")) is AutoencoderKLWan


def test_distill_tiny_from_latent_file(teacher_and_pruned, tmp_path):
    root = teacher_and_pruned
    f = tmp_path / "dit_samples.safetensors"  # e.g. a DiT's own (normalised) samples
    save_file({"latents": torch.randn(3, 4, 2, 2, 2)}, str(f))
    out = tmp_path / "tiny"
    assert main(["distill-decoder", f"teacher={root / 'vae'}", "student=tiny", "tiny_width=2", f"latents={f}",
                 f"out={out}", "steps=2", "batch_size=2", "log_every=1"]) == 0
    dec = load_light_decoder(out / "model")
    assert isinstance(dec, TinyWanDecoder)
    with torch.no_grad():
        assert dec.decode(torch.randn(1, 4, 3, 2, 2)).sample.shape == (1, 3, 9, 16, 16)


def test_distill_bad_latents(teacher_and_pruned, tmp_path, capsys):
    root = teacher_and_pruned
    f = tmp_path / "lat.safetensors"
    save_file({"latents": torch.randn(2, 16, 2, 2, 2)}, str(f))
    assert main(["distill-decoder", f"teacher={root / 'vae'}", f"student={root / 'pruned'}", f"latents={f}",
                 f"out={tmp_path / 'o'}", "steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "16 channels" in err
    assert main(["distill-decoder", f"teacher={tmp_path}", f"out={tmp_path / 'o'}", "steps=1"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_tiny_decoder_shapes_and_causality():
    torch.manual_seed(0)
    dec = TinyWanDecoder(z_dim=4, width=2).eval()
    z = torch.randn(1, 4, 3, 2, 2)
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    with torch.no_grad():
        a, b = dec.decode(z).sample, dec.decode(z2).sample
    assert a.shape == (1, 3, 9, 16, 16)
    # latent frame 2 decodes to frames 5..8: the first 5 frames must not depend on it
    assert torch.equal(a[:, :, :5], b[:, :, :5]) and not torch.equal(a[:, :, 5:], b[:, :, 5:])


def test_distill_a_patch2_student_matches_the_stages_both_have(teacher_and_pruned, tmp_path):
    """A patch2 / res_blocks=0 student (the full-resolution stage gone) distils on the stage outputs it
    shares with the teacher, trains its fresh head away from zero, and loads with the stock class."""
    from diffusers import AutoencoderKLWan

    from fastlight.decoder.distill import DecoderDistillConfig, DecoderDistillRecipe
    from fastlight.decoder.prune_vae import prune_vae
    from fastlight.train.loop import train

    root = teacher_and_pruned
    man = prune_vae(root / "vae", 0.6, tmp_path / "p2", calib=2, head="patch2", res_blocks=0, progress=False)
    assert man["head"] == "patch2" and man["num_res_blocks"] == 0 and man["encoder"] == "placeholder"
    assert "decode only" in man["use"] and man["head_init"]["rows"] > 0  # the new head starts at its least-squares fit
    cfg = DecoderDistillConfig(out=str(tmp_path / "run"), teacher=str(root / "vae"), student=str(tmp_path / "p2"),
                               steps=2, batch_size=2, log_every=1, save_every=2, lr=1e-2, warmup_steps=0, threads=1)
    recipe = DecoderDistillRecipe(cfg)
    assert recipe.names == ["mid_block.resnets.1", "up_blocks.0.upsamplers.0", "up_blocks.1.upsamplers.0"]
    out = train(recipe, cfg, progress=False)
    light = AutoencoderKLWan.from_pretrained(out).eval()
    z = torch.randn(1, 4, 2, 2, 2)
    with torch.no_grad():
        video = light.decode(z).sample
    assert video.shape == (1, 3, 5, 16, 16) and video.abs().max() > 0
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["pruning"]["head"] == "patch2" and saved["decoder_params"] == man["decoder_params"]


def test_distill_refuses_a_student_of_another_video_shape(teacher_and_pruned, tmp_path, capsys):
    from diffusers import AutoencoderKLWan

    root = teacher_and_pruned
    cfg = json.loads((root / "vae" / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    AutoencoderKLWan(**{**cfg, "dim_mult": [1, 2, 4], "temperal_downsample": [True, True]}).save_pretrained(tmp_path / "s")
    assert main(["distill-decoder", f"teacher={root / 'vae'}", f"student={tmp_path / 's'}", f"out={tmp_path / 'o'}",
                 "steps=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "decodes (1, 3, 5, 8, 8) videos where the teacher decodes (1, 3, 5, 16, 16)" in err
