"""Depth and width surgery: pruned exports load with the stock diffusers classes and compute
exactly what the source computes with the same blocks skipped / units masked (tiny, CPU)."""
import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel, WanTransformer3DModel

from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from fastlight.models.hunyuan import HunyuanDenoiser, tiny_hunyuan_config
from fastlight.models.wan import WanDenoiser, tiny_wan_config
from fastlight.prune import surgery
from fastlight.prune.surgery import prune_depth, prune_width, wan_width_params_after


def _randomize(den, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in den.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return den.eval()


@pytest.fixture
def wan():
    torch.manual_seed(0)
    return _randomize(WanDenoiser.from_config(null_text=torch.randn(1, 2, 16), meta={"shift": 3.0}, **tiny_wan_config(num_layers=4)))


@pytest.fixture
def hunyuan():
    torch.manual_seed(0)
    cfg = tiny_hunyuan_config(num_layers=2, num_single_layers=2)
    return _randomize(HunyuanDenoiser.from_config(null_text=torch.randn(1, 3, cfg["text_embed_dim"]), **cfg))


def _wan_inputs(B=2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 4, 3, 8, 8, generator=g), torch.tensor([0.3, 0.9])[:B], torch.randn(B, 5, 16, generator=g)


def _wan_stock(model, x, s, txt, image=None):
    """The stock diffusers forward (T2V, or TI2V the Wan 2.2 way: clean first frame, timestep 0)."""
    t = s * 1000
    if image is not None:
        x = torch.cat([image, x[:, :, 1:]], 2)
        per_frame = (x.shape[3] // 2) * (x.shape[4] // 2)
        t = t[:, None].repeat(1, x.shape[2] * per_frame)
        t[:, :per_frame] = 0
    with torch.no_grad():
        return model(x, t, txt, return_dict=False)[0]


def test_wan_depth_t2v_and_ti2v_equal_skip(wan, tmp_path):
    drop = [1, 2]
    pruned = prune_depth(wan, drop)
    assert isinstance(pruned, WanDenoiser) and pruned is not wan
    assert pruned.model.config.num_layers == 2 and wan.model.config.num_layers == 4
    assert pruned.num_params() == wan.num_params(drop)
    assert torch.equal(pruned.null_text, wan.null_text) and pruned.meta["shift"] == 3.0
    pruned.save(tmp_path / "p")
    stock = WanTransformer3DModel.from_pretrained(tmp_path / "p").eval()
    x, s, txt = _wan_inputs()
    with torch.no_grad():
        ref = wan(x, s, Cond(txt), skip=drop)
        torch.testing.assert_close(_wan_stock(stock, x, s, txt), ref, atol=1e-6, rtol=0)
        assert not torch.allclose(ref, wan(x, s, Cond(txt)), atol=1e-4)
        img = torch.randn(2, 4, 1, 8, 8)
        ref = wan(x, s, Cond(txt, img), skip=drop)
        torch.testing.assert_close(_wan_stock(stock, x, s, txt, img)[:, :, 1:], ref[:, :, 1:], atol=1e-6, rtol=0)
        # and the adapter around the loaded folder equals it as well
        torch.testing.assert_close(load_denoiser(tmp_path / "p")(x, s, Cond(txt, img)), ref, atol=1e-6, rtol=0)


def test_wan_depth_keeps_source_untouched_and_weights_reindexed(wan):
    before = {k: v.clone() for k, v in wan.model.state_dict().items()}
    pruned = prune_depth(wan, [0, 2])
    for k, v in wan.model.state_dict().items():
        assert torch.equal(v, before[k])
    sd = pruned.model.state_dict()
    assert torch.equal(sd["blocks.0.ffn.net.2.weight"], before["blocks.1.ffn.net.2.weight"])
    assert torch.equal(sd["blocks.1.attn1.to_q.weight"], before["blocks.3.attn1.to_q.weight"])
    assert torch.equal(sd["proj_out.weight"], before["proj_out.weight"])
    assert sd["blocks.0.ffn.net.2.weight"].data_ptr() != before["blocks.1.ffn.net.2.weight"].data_ptr()
    assert prune_depth(wan, []).num_params() == wan.num_params()


def _hy_inputs(den, B=2, L=5):
    g = torch.Generator().manual_seed(1)
    cfg = den.model.config
    mask = torch.ones(B, L)
    mask[0, 3:] = 0
    extra = {"pooled": torch.randn(B, cfg.pooled_projection_dim, generator=g), "text_mask": mask,
             "guidance": torch.tensor([3500.0, 6000.0])}
    x = torch.randn(B, 4, 3, 4, 6, generator=g)
    return x, torch.rand(B, generator=g), Cond(torch.randn(B, L, cfg.text_embed_dim, generator=g), extra=extra)


def test_hunyuan_depth_equals_skip(hunyuan, tmp_path):
    drop = [1, 2]  # double block 1 and single block 0
    pruned = prune_depth(hunyuan, drop)
    cfg = pruned.model.config
    assert (cfg.num_layers, cfg.num_single_layers, cfg.num_refiner_layers) == (1, 1, 1)
    assert pruned.num_params() == hunyuan.num_params(drop)
    assert [b.kind for b in pruned.blocks] == ["double", "single"]
    sd, src = pruned.model.state_dict(), hunyuan.model.state_dict()
    assert torch.equal(sd["single_transformer_blocks.0.proj_out.weight"], src["single_transformer_blocks.1.proj_out.weight"])
    assert torch.equal(sd["transformer_blocks.0.ff.net.2.weight"], src["transformer_blocks.0.ff.net.2.weight"])
    assert any(k.startswith("context_embedder.token_refiner.refiner_blocks.0.") for k in sd)
    pruned.save(tmp_path / "p")
    stock = HunyuanVideoTransformer3DModel.from_pretrained(tmp_path / "p").eval()
    x, s, cond = _hy_inputs(hunyuan)
    with torch.no_grad():
        out = stock(x, s * 1000, cond.text, cond.extra["text_mask"], cond.extra["pooled"], cond.extra["guidance"],
                    return_dict=False)[0]
        ref = hunyuan(x, s, cond, skip=drop)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert not torch.allclose(ref, hunyuan(x, s, cond), atol=1e-4)


def test_hunyuan_drop_all_of_one_kind(hunyuan):
    pruned = prune_depth(hunyuan, [2, 3])
    assert (pruned.model.config.num_layers, pruned.model.config.num_single_layers) == (2, 0)
    x, s, cond = _hy_inputs(hunyuan)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x, s, cond), hunyuan(x, s, cond, skip=[2, 3]), atol=1e-6, rtol=0)


def test_depth_bad_ids(wan):
    with pytest.raises(ValueError, match=r"block 9: the model has blocks 0\.\.3"):
        prune_depth(wan, [9])
    with pytest.raises(ValueError, match="every block"):
        prune_depth(wan, [0, 1, 2, 3])


def test_param_count_assertion_fires(wan, monkeypatch):
    real = surgery.count_params
    monkeypatch.setattr(surgery, "count_params", lambda m: real(m) + 1)
    with pytest.raises(RuntimeError, match=rf"has {wan.num_params([1]) + 1} parameters but {wan.num_params([1])}"):
        prune_depth(wan, [1])
    with pytest.raises(RuntimeError, match="parameters but"):
        prune_width(wan, {})


def test_wan_width_ffn(wan, tmp_path):
    F = wan.model.config.ffn_dim  # 32
    keep = {b: sorted(torch.randperm(F, generator=torch.Generator().manual_seed(b))[:20].tolist()) for b in range(4)}
    layers = {str(b): {"keep_heads": [0, 1], "keep_ffn": k} for b, k in keep.items()}
    pruned = prune_width(wan, layers)
    assert pruned.model.config.ffn_dim == 20 and pruned.model.config.num_attention_heads == 2
    D = 16
    assert pruned.num_params() == wan.num_params() - 4 * 12 * (2 * D + 1) == wan_width_params_after(wan, 20)
    pruned.save(tmp_path / "w")
    stock = WanTransformer3DModel.from_pretrained(tmp_path / "w").eval()
    x, s, txt = _wan_inputs()
    out = _wan_stock(stock, x, s, txt)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # dropping units == zeroing their output columns in the source
    masked = prune_depth(wan, [])
    with torch.no_grad():
        for b, k in keep.items():
            cols = torch.ones(F, dtype=torch.bool)
            cols[k] = False
            masked.model.blocks[b].ffn.net[2].weight[:, cols] = 0
        torch.testing.assert_close(out, masked(x, s, Cond(txt)), atol=1e-6, rtol=0)
        assert not torch.allclose(out, wan(x, s, Cond(txt)), atol=1e-4)


def test_wan_width_all_kept_is_identity(wan, tmp_path):
    layers = {b: {"keep_heads": None, "keep_ffn": list(range(32))} for b in range(4)}
    pruned = prune_width(wan, layers)
    assert pruned.num_params() == wan.num_params()
    pruned.save(tmp_path / "w")
    stock = WanTransformer3DModel.from_pretrained(tmp_path / "w").eval()
    x, s, txt = _wan_inputs()
    with torch.no_grad():
        assert torch.equal(_wan_stock(stock, x, s, txt), wan(x, s, Cond(txt)))


def test_width_refusals(wan, hunyuan):
    with pytest.raises(ValueError, match="ties the head count to the residual width"):
        prune_width(wan, {0: {"keep_heads": [1], "keep_ffn": None}})
    with pytest.raises(ValueError, match="one ffn_dim for all blocks"):
        prune_width(wan, {0: {"keep_ffn": list(range(16))}})
    with pytest.raises(ValueError, match=r"names id 40 but there are 32"):
        prune_width(wan, {b: {"keep_ffn": list(range(15)) + [40]} for b in range(4)})
    with pytest.raises(ValueError, match="sorted"):
        prune_width(wan, {b: {"keep_ffn": [3, 1]} for b in range(4)})
    with pytest.raises(ValueError, match=r"block 7 but the model has blocks 0\.\.3"):
        prune_width(wan, {7: {"keep_ffn": [0]}})
    with pytest.raises(ValueError, match="width pruning supports Wan only"):
        prune_width(hunyuan, {0: {"keep_ffn": [0]}})


def test_dtype_device_and_mode_preserved():
    torch.manual_seed(0)
    den = WanDenoiser.from_config(**tiny_wan_config(num_layers=3)).to(torch.bfloat16).train()
    for pruned in (prune_depth(den, [1]), prune_width(den, {b: {"keep_ffn": list(range(8))} for b in range(3)})):
        assert {p.dtype for p in pruned.model.parameters()} == {torch.bfloat16}
        assert pruned.model.rope.freqs_cos.dtype == den.model.rope.freqs_cos.dtype
        assert pruned.model.training and all(p.requires_grad for p in pruned.model.parameters())
    x, s, txt = _wan_inputs()
    with torch.no_grad():
        pruned = prune_depth(den.eval(), [1])
        assert torch.equal(pruned(x.bfloat16(), s, Cond(txt.bfloat16())), den(x.bfloat16(), s, Cond(txt.bfloat16()), skip=[1]))
