import json

import pytest
import torch
from safetensors.torch import save_file

from fastlight.cli import main
from fastlight.decoder.distill import decode_raw
from fastlight.decoder.prune import channel_scores, count, decoder_groups, load_vae, plan_decoder, prune_decoder


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory, vae_cfg):
    from diffusers import AutoencoderKLWan

    root = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**vae_cfg).eval()
    with torch.no_grad():  # untrained RMS gains are all 1 and biases 0: perturb so every channel differs
        for p in vae.decoder.parameters():
            p.add_(0.1 * torch.randn_like(p))
    vae.save_pretrained(root / "vae")
    (root / "vae" / "manifest.json").write_text(json.dumps({"world": {"size": 16, "num_frames": 5}}))
    return root / "vae"


def _z(n=2, t=2, seed=0):
    return torch.randn(n, 4, t, 2, 2, generator=torch.Generator().manual_seed(seed))


def test_permuted_full_width_surgery_is_exact(tiny_vae):
    """Keeping every channel in a random order per group must not change the decoder's output: the channel
    map covers every tensor (residuals, shortcuts, attention qkv, time_conv's two copies, norms)."""
    vae = load_vae(tiny_vae)
    widths, pmap, _ = decoder_groups(vae.decoder)
    assert len(pmap) >= len([n for n, _ in vae.decoder.named_parameters()])
    g = torch.Generator().manual_seed(1)
    keep = {k: torch.randperm(w, generator=g) for k, w in widths.items()}
    same, _ = prune_decoder(vae, 4, keep=keep)
    z = _z()
    with torch.no_grad():
        a, b = vae.decode(z).sample, same.decode(z).sample
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_prune_same_class_smaller_config_param_count(tiny_vae, tmp_path):
    from diffusers import AutoencoderKLWan

    vae = load_vae(tiny_vae)
    plan = plan_decoder(vae, 0.5)
    assert plan["achieved_ratio"] >= 0.5 and plan["decoder_base_dim"] < 4
    light, info = prune_decoder(vae, plan["decoder_base_dim"], channel_scores(vae, _z()))
    assert type(light) is AutoencoderKLWan and light.config.decoder_base_dim == plan["decoder_base_dim"]
    assert info["decoder_params"] == plan["decoder_params_after"] == count(light.decoder)
    assert count(light.encoder) == count(vae.encoder)
    light.save_pretrained(tmp_path / "light")
    back = AutoencoderKLWan.from_pretrained(tmp_path / "light").eval()  # the stock loader
    with torch.no_grad():
        out = back.decode(_z()).sample
    assert out.shape == (2, 3, 5, 16, 16) and torch.isfinite(out).all()


def test_scores_rank_a_dead_channel_last(tiny_vae):
    vae = load_vae(tiny_vae)
    rn = vae.decoder.up_blocks[0].resnets[0]
    with torch.no_grad():
        rn.conv1.weight[3].zero_()
        rn.conv1.bias[3] = 0.0
    s = channel_scores(vae, _z())
    hid = s["up_blocks.0.resnets.0.hidden"]
    assert hid[3] == 0 and int(hid.argmin()) == 3
    light, info = prune_decoder(vae, 2, s)
    assert 3 not in info["kept_channels"]["up_blocks.0.resnets.0.hidden"]


def test_decode_raw_matches_diffusers(tiny_vae):
    vae = load_vae(tiny_vae)
    z = _z(t=3)
    with torch.no_grad():
        assert torch.equal(decode_raw(vae, z).clamp(-1, 1), vae.decode(z).sample)


def test_cli_prune_writes_stock_folder_and_manifest(tiny_vae, tmp_path, capsys):
    out = tmp_path / "pruned"
    assert main(["prune-decoder", str(tiny_vae), "--ratio", "0.5", "--out", str(out), "--calib", "2"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["achieved_ratio"] >= 0.5 and man["config_change"]["decoder_base_dim"]["from"] == 4
    assert json.loads((out / "config.json").read_text())["_class_name"] == "AutoencoderKLWan"
    assert "removed" in capsys.readouterr().out
    # a second run into the same folder refuses (no silent overwrite)
    assert main(["prune-decoder", str(tiny_vae), "--ratio", "0.5", "--out", str(out)]) == 2


@pytest.mark.parametrize("ratio", ["0", "1", "-0.2", "1.5"])
def test_cli_bad_ratio(tiny_vae, tmp_path, capsys, ratio):
    assert main(["prune-decoder", str(tiny_vae), "--ratio", ratio, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "between 0 and 1" in err
    assert not (tmp_path / "o").exists()


def test_cli_not_a_wan_vae(tmp_path, capsys):
    d = tmp_path / "notvae"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    assert main(["prune-decoder", str(d), "--ratio", "0.5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an AutoencoderKLWan" in err
    assert main(["prune-decoder", str(tmp_path / "missing"), "--ratio", "0.5", "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_latents_with_wrong_channels(tiny_vae, tmp_path, capsys):
    f = tmp_path / "lat.safetensors"
    save_file({"latents": torch.randn(2, 16, 2, 2, 2)}, str(f))
    assert main(["prune-decoder", str(tiny_vae), "--ratio", "0.5", "--out", str(tmp_path / "o"),
                 "--latents", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "16 channels" in err and "z_dim is 4" in err


LAYOUTS = [(0, "full"), (None, "patch2"), (0, "patch2")]


@pytest.mark.parametrize("res_blocks,head", LAYOUTS)
def test_light_layouts_are_stock_configs_with_checked_counts(tiny_vae, tmp_path, res_blocks, head):
    """res_blocks / head=patch2 (prune.py's light_config): a stock AutoencoderKLWan config, the planned
    parameter count, the teacher's video shape, shared tensors carried over exactly, new ones listed."""
    from diffusers import AutoencoderKLWan

    vae = load_vae(tiny_vae)
    plan = plan_decoder(vae, 0.6, res_blocks, head)
    assert plan["achieved_ratio"] >= 0.6 and plan["head"] == head
    light, info = prune_decoder(vae, plan["decoder_base_dim"], channel_scores(vae, _z()), res_blocks=res_blocks,
                                head=head)
    assert info["decoder_params"] == plan["decoder_params_after"] == count(light.decoder)
    assert info["encoder"] == "placeholder"  # num_res_blocks / patch_size are shared with the encoder
    change = info["config_change"]
    assert ("num_res_blocks" in change) == (res_blocks == 0) and ("patch_size" in change) == (head == "patch2")
    if head == "patch2":
        assert light.config.patch_size == 2 and light.config.dim_mult == [2, 4, 4]
        assert light.config.temperal_downsample == [True, True] and light.config.out_channels == 12
        assert info["fresh"] == ["decoder.norm_out.gamma", "decoder.conv_out.weight", "decoder.conv_out.bias"]
    else:
        assert info["fresh"] == []
    # a shared tensor is the teacher's, at the kept channels of its groups
    keep = {g: torch.tensor(v) for g, v in info["kept_channels"].items()}
    want = vae.decoder.mid_block.resnets[0].conv1.weight[keep["mid_block.resnets.0.hidden"]][:, keep["conv_in"]]
    assert torch.equal(light.decoder.mid_block.resnets[0].conv1.weight, want)
    z = _z()
    with torch.no_grad():
        out = light.decode(z).sample
    assert out.shape == vae.decode(z).sample.shape == (2, 3, 5, 16, 16)
    if head == "patch2":
        assert out.abs().max() == 0  # the fresh conv_out starts at zero: a grey video, not noise
    light.save_pretrained(tmp_path / "light")
    back = AutoencoderKLWan.from_pretrained(tmp_path / "light").eval()  # the stock loader
    assert count(back.decoder) == info["decoder_params"] and back.config.num_res_blocks == light.config.num_res_blocks


def test_channel_scores_still_choose_at_the_smallest_width(tiny_vae):
    """decoder_base_dim 1 in the patch2 layout: a dead channel is still the one dropped in every shared group."""
    vae = load_vae(tiny_vae)
    with torch.no_grad():
        vae.decoder.conv_in.weight[5].zero_()
        vae.decoder.conv_in.bias[5] = 0.0
        for rn in vae.decoder.mid_block.resnets:  # keep channel 5 out of the stream's residual sums
            rn.conv2.weight[5].zero_()
            rn.conv2.bias[5] = 0.0
        vae.decoder.mid_block.attentions[0].proj.weight[5].zero_()
        vae.decoder.mid_block.attentions[0].proj.bias[5] = 0.0
    s = channel_scores(vae, _z())
    assert int(s["conv_in"].argmin()) == 5
    light, info = prune_decoder(vae, 1, s, res_blocks=0, head="patch2")
    assert len(info["kept_channels"]["conv_in"]) == 4 and 5 not in info["kept_channels"]["conv_in"]


def test_light_config_bad_layouts(tiny_vae):
    from fastlight.decoder.prune import light_config
    from fastlight.errors import InputError, ModelError

    cfg = dict(load_vae(tiny_vae).config)
    with pytest.raises(InputError, match="head must be one of full, patch2"):
        light_config(cfg, 2, head="patch4")
    with pytest.raises(InputError, match=r"res_blocks must be a whole number in \[0, 1\]"):
        light_config(cfg, 2, res_blocks=2)
    with pytest.raises(InputError, match="decoder_base_dim"):
        light_config(cfg, 5)
    with pytest.raises(ModelError, match="last upsampling is spatial only"):
        light_config({**cfg, "temperal_downsample": [True, True, False]}, 2, head="patch2")
    assert light_config(cfg, 2)["base_dim"] == 4  # the same layout keeps the teacher's encoder


def test_cli_prune_to_the_patch2_layout(tiny_vae, tmp_path, capsys):
    out = tmp_path / "p2"
    assert main(["prune-decoder", str(tiny_vae), "--ratio", "0.6", "--head", "patch2", "--res-blocks", "0",
                 "--out", str(out), "--calib", "2"]) == 0
    assert "(head patch2, res_blocks 0)" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["patch_size"], cfg["num_res_blocks"]) == (2, 0)
    assert main(["prune-decoder", str(tiny_vae), "--ratio", "0.6", "--res-blocks", "3", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "res_blocks must be a whole number in [0, 1]" in err


def test_fit_head_is_the_least_squares_head(tiny_vae):
    """The patch2 head's fit: far better than its zero start, and a minimum of the (unclamped) squared error
    to the teacher's video over the calibration latents: no small change of the weights does better."""
    from fastlight.decoder.prune import fit_head

    vae = load_vae(tiny_vae)
    z = _z(n=3)
    light, _ = prune_decoder(vae, 2, channel_scores(vae, z), res_blocks=0, head="patch2")
    with torch.no_grad():
        target = torch.cat([vae.decode(z[i:i + 1]).sample for i in range(3)])
    zero_mse = float((target ** 2).mean())
    res = fit_head(light, vae, z, ridge=1e-6)
    assert res["rows"] == 3 * 5 * 8 * 8  # every position of the 5-frame, 8x8-patch outputs

    def mse():
        with torch.no_grad():
            return float(((decode_raw(light, z) - target) ** 2).mean())

    best = mse()
    assert best < 0.5 * zero_mse
    assert res["psnr_vs_teacher_db"] >= 10 * torch.log10(torch.tensor(4.0 / best)).item() - 1e-3  # clamping only helps
    conv = light.decoder.conv_out
    w0, b0 = conv.weight.detach().clone(), conv.bias.detach().clone()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        with torch.no_grad():
            conv.weight.copy_(w0 + 1e-2 * w0.abs().mean() * torch.randn(w0.shape, generator=g))
            conv.bias.copy_(b0 + 1e-2 * torch.randn(b0.shape, generator=g))
        assert mse() > best
