import copy
import json

import pytest
import torch

from fastlight.models.denoiser import Cond, ModelError
from fastlight.models.load import load_denoiser
from fastlight.models.wan import WanDenoiser, tiny_wan_config


@pytest.fixture
def wan():
    return WanDenoiser.from_config(**tiny_wan_config(num_layers=4)).eval()


def _inputs(B=2):
    return torch.randn(B, 4, 3, 8, 8), torch.tensor([0.3, 0.9])[:B], torch.randn(B, 5, 16)


def test_forward_equals_stock_diffusers(wan):
    x, s, txt = _inputs()
    ref = wan.model(x, s * 1000, txt, return_dict=False)[0]
    assert torch.equal(wan(x, s, Cond(txt)), ref)


def test_skip_equals_physically_removed_blocks(wan):
    x, s, txt = _inputs()
    removed = copy.deepcopy(wan.model)
    removed.blocks = torch.nn.ModuleList([b for i, b in enumerate(removed.blocks) if i not in (1, 2)])
    ref = removed(x, s * 1000, txt, return_dict=False)[0]
    out = wan(x, s, Cond(txt), skip={1, 2})
    assert torch.allclose(out, ref, atol=1e-6)
    assert not torch.allclose(out, wan(x, s, Cond(txt)), atol=1e-4)


def test_ti2v_first_frame_clean_with_timestep_zero(wan):
    x, s, txt = _inputs()
    img = torch.randn(2, 4, 1, 8, 8)
    tokens_per_frame = 16
    t = torch.zeros(2, 3 * tokens_per_frame)
    t[:, tokens_per_frame:] = (s * 1000)[:, None]
    ref = wan.model(torch.cat([img, x[:, :, 1:]], 2), t, txt, return_dict=False)[0]
    v = wan(x, s, Cond(txt, img))
    assert torch.equal(v[:, :, 1:], ref[:, :, 1:])
    assert v[:, :, 0].abs().max() == 0
    # the noisy first frame passed in is ignored: the image replaces it
    x2 = x.clone()
    x2[:, :, 0] = 99.0
    assert torch.equal(wan(x2, s, Cond(txt, img)), v)


def test_blocks_params_and_capture(wan):
    infos = wan.blocks
    assert [b.index for b in infos] == [0, 1, 2, 3] and {b.kind for b in infos} == {"wan"}
    per_block = sum(p.numel() for p in wan.model.blocks[0].parameters())
    assert infos[0].num_params == per_block
    assert wan.num_params({0, 3}) == wan.num_params() - 2 * per_block
    x, s, txt = _inputs()
    v, hidden = wan(x, s, Cond(txt), capture=[0, 2], skip={1})
    assert set(hidden) == {0, 2} and hidden[0].shape == (2, 3 * 16, 16)
    with pytest.raises(ValueError, match="out of range"):
        wan(x, s, Cond(txt), skip={7})


def test_null_cond_and_cat(wan):
    x, s, txt = _inputs()
    c = Cond(txt)
    u = wan.null_cond(c)
    assert u.text.shape[0] == 2 and u.text.abs().sum() == 0
    both = c.cat(u)
    v = wan(torch.cat([x, x]), torch.cat([s, s]), both)
    assert torch.allclose(v[:2], wan(x, s, c), atol=1e-5)
    assert torch.allclose(v[2:], wan(x, s, u), atol=1e-5)


def test_save_load_roundtrip_is_stock_diffusers_folder(wan, tmp_path):
    wan.save(tmp_path / "m", {"note": "x"})
    from diffusers import WanTransformer3DModel

    stock = WanTransformer3DModel.from_pretrained(tmp_path / "m")
    assert isinstance(stock, WanTransformer3DModel)
    back = load_denoiser(tmp_path / "m")
    x, s, txt = _inputs()
    assert torch.equal(back(x, s, Cond(txt)), wan(x, s, Cond(txt)))
    assert back.meta["note"] == "x"


def test_bad_model_folders(tmp_path, wan):
    with pytest.raises(ModelError, match="does not exist"):
        load_denoiser(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_denoiser(tmp_path / "empty")
    wan.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["ffn_dim"] = 64  # config no longer matches the weights
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not match its config"):
        load_denoiser(tmp_path / "m")
    cfg["_class_name"] = "UNet2DModel"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="supports WanTransformer3DModel"):
        load_denoiser(tmp_path / "m")


def test_gradient_checkpointing_same_output_and_grads(wan, monkeypatch):
    import torch.utils.checkpoint as ckpt

    calls = []
    real = ckpt.checkpoint
    monkeypatch.setattr(ckpt, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, s, txt = _inputs()
    wan.train()
    v = wan(x, s, Cond(txt), skip={2})
    v.pow(2).mean().backward()
    ref = {n: p.grad.clone() for n, p in wan.named_parameters() if p.grad is not None}
    wan.zero_grad()
    wan.model.enable_gradient_checkpointing()
    v2 = wan(x, s, Cond(txt), skip={2})
    v2.pow(2).mean().backward()
    assert torch.allclose(v, v2, atol=1e-6)
    assert len(calls) == 3  # the 3 blocks that ran were checkpointed
    for n, p in wan.named_parameters():
        if n in ref:
            assert torch.allclose(p.grad, ref[n], atol=1e-6), n
