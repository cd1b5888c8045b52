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
