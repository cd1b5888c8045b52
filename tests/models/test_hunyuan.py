"""HunyuanDenoiser equals the stock diffusers HunyuanVideoTransformer3DModel forward (tiny, CPU)."""
import copy

import pytest
import torch

from fastlight.models.denoiser import Cond, ModelError
from fastlight.models.load import load_denoiser
from fastlight.models.hunyuan import DEFAULT_GUIDANCE, HunyuanDenoiser, tiny_hunyuan_config

B, C, F, H, W, L = 2, 4, 3, 4, 6, 5


def make(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = tiny_hunyuan_config(**kw)
    den = HunyuanDenoiser.from_config(null_text=torch.randn(1, 3, cfg["text_embed_dim"]), **cfg).eval()
    # random, non-trivial weights everywhere (diffusers zero-inits nothing here, but be sure)
    with torch.no_grad():
        for prm in den.model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    return den


def inputs(den, seed=1, guidance=True):
    g = torch.Generator().manual_seed(seed)
    cfg = den.model.config
    x_t = torch.randn(B, C, F, H, W, generator=g)
    s = torch.rand(B, generator=g)
    text = torch.randn(B, L, cfg.text_embed_dim, generator=g)
    mask = torch.zeros(B, L)
    mask[0, :3] = 1  # partial mask (valid tokens first)
    mask[1, :] = 1
    extra = {"pooled": torch.randn(B, cfg.pooled_projection_dim, generator=g), "text_mask": mask}
    if guidance:
        extra["guidance"] = torch.tensor([3500.0, 6000.0])
    return x_t, s, Cond(text, extra=extra)


def stock(model, x_t, s, cond, guidance=None):
    g = cond.extra.get("guidance", guidance)
    with torch.no_grad():
        return model(x_t, s * 1000.0, cond.text, cond.extra["text_mask"], cond.extra["pooled"], g, return_dict=False)[0]


def test_forward_equals_stock():
    den = make()
    x_t, s, cond = inputs(den)
    with torch.no_grad():
        ours = den(x_t, s, cond)
    ref = stock(den.model, x_t, s, cond)
    assert ours.shape == (B, C, F, H, W)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    # default embedded guidance = 6.0 * 1000
    del cond.extra["guidance"]
    with torch.no_grad():
        ours = den(x_t, s, cond)
    ref = stock(den.model, x_t, s, cond, guidance=torch.full((B,), DEFAULT_GUIDANCE * 1000))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_forward_without_guidance_embeds():
    den = make(guidance_embeds=False)
    x_t, s, cond = inputs(den, guidance=False)
    with torch.no_grad():
        ours = den(x_t, s, cond)
    torch.testing.assert_close(ours, stock(den.model, x_t, s, cond), atol=1e-6, rtol=0)


def test_gradient_checkpointing_same_output():
    den = make()
    x_t, s, cond = inputs(den)
    ref = stock(den.model, x_t, s, cond)
    den.model.enable_gradient_checkpointing()
    out = den(x_t, s, cond, skip={1})
    out.square().mean().backward()
    with torch.no_grad():
        torch.testing.assert_close(den(x_t, s, cond), ref, atol=1e-6, rtol=0)
    assert den.model.transformer_blocks[0].ff.net[0].proj.weight.grad is not None


def test_skip_equals_physically_removed_blocks():
    den = make()
    x_t, s, cond = inputs(den)
    n_double = len(den.model.transformer_blocks)
    pruned = copy.deepcopy(den.model)
    del pruned.transformer_blocks[1]
    del pruned.single_transformer_blocks[0]
    with torch.no_grad():
        ours = den(x_t, s, cond, skip={1, n_double + 0})
    torch.testing.assert_close(ours, stock(pruned, x_t, s, cond), atol=1e-6, rtol=0)
    assert not torch.allclose(ours, stock(den.model, x_t, s, cond))


def test_block_infos_and_num_params():
    den = make()
    m = den.model
    infos = den.blocks
    assert [b.kind for b in infos] == ["double", "double", "single", "single"]
    assert [b.index for b in infos] == [0, 1, 2, 3]
    assert [b.kind_index for b in infos] == [0, 1, 0, 1]
    for b in infos:
        blocks = m.transformer_blocks if b.kind == "double" else m.single_transformer_blocks
        assert b.num_params == sum(p.numel() for p in blocks[b.kind_index].parameters())
    total = sum(p.numel() for p in m.parameters())
    assert den.num_params() == total
    assert den.num_params({0, 3}) == total - infos[0].num_params - infos[3].num_params
    assert infos[0].num_params > infos[2].num_params > 0  # double blocks are the bigger ones
    with pytest.raises(ValueError, match="out of range"):
        den(*inputs(den), skip={4})


def test_capture_shapes():
    den = make()
    x_t, s, cond = inputs(den)
    with torch.no_grad():
        v, hidden = den(x_t, s, cond, capture=[1, 2])
        v0 = den(x_t, s, cond)
    torch.testing.assert_close(v, v0, atol=0, rtol=0)
    N = F * (H // 2) * (W // 2)
    D = 2 * 8
    assert set(hidden) == {1, 2}
    assert hidden[1].shape == (B, N, D) and hidden[2].shape == (B, N, D)
    # a skipped block is not captured
    with torch.no_grad():
        _, hidden = den(x_t, s, cond, skip={1}, capture=[1, 2])
    assert set(hidden) == {2}


def test_save_load_round_trip(tmp_path):
    den = make()
    x_t, s, cond = inputs(den)
    den.save(tmp_path / "m", {"note": "x"})
    loaded = load_denoiser(tmp_path / "m")
    assert isinstance(loaded, HunyuanDenoiser)
    assert loaded.meta["family"] == "hunyuan" and loaded.meta["note"] == "x"
    torch.testing.assert_close(loaded.null_text, den.null_text, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x_t, s, cond, skip={2}), den(x_t, s, cond, skip={2}), atol=0, rtol=0)


def test_null_cond():
    den = make()
    x_t, s, cond = inputs(den)
    nc = den.null_cond(cond)
    L0 = den.null_text.shape[1]
    # null text padded to the prompt's length with masked-out zero tokens
    assert nc.text.shape == cond.text.shape
    torch.testing.assert_close(nc.text[1, :L0], den.null_text[0], atol=0, rtol=0)
    assert not nc.text[:, L0:].any()
    assert nc.extra["text_mask"].tolist() == [[1.0] * L0 + [0.0] * (L - L0)] * B
    assert torch.equal(nc.extra["pooled"], torch.zeros_like(cond.extra["pooled"]))
    assert torch.equal(nc.extra["guidance"], cond.extra["guidance"])
    assert torch.equal(cond.extra["text_mask"][0], torch.tensor([1.0, 1, 1, 0, 0]))  # cond untouched
    unpadded = Cond(den.null_text.expand(B, -1, -1), extra={**nc.extra, "text_mask": torch.ones(B, L0)})
    with torch.no_grad():
        v_null = den(x_t, s, nc)
        v = den(x_t, s, cond)
        both = den(torch.cat([x_t, x_t]), torch.cat([s, s]), cond.cat(nc))  # batched CFG
        v_unpadded = den(x_t, s, unpadded)
    assert not torch.allclose(v_null, v)
    torch.testing.assert_close(both[:B], v, atol=1e-5, rtol=0)
    torch.testing.assert_close(both[B:], v_null, atol=1e-5, rtol=0)
    torch.testing.assert_close(v_unpadded, v_null, atol=1e-5, rtol=0)  # padding is invisible
    # default null text: one zero token -> only the first token valid
    plain = HunyuanDenoiser.from_config(**tiny_hunyuan_config())
    nc = plain.null_cond(cond)
    assert nc.text.shape == cond.text.shape and not nc.text.any()
    assert nc.extra["text_mask"].tolist() == [[1.0, 0, 0, 0, 0]] * B
    with torch.no_grad():
        assert torch.isfinite(plain(x_t, s, nc)).all()


def test_missing_extras_and_t2v_only():
    den = make()
    x_t, s, cond = inputs(den)
    with pytest.raises(ValueError, match="pooled"):
        den(x_t, s, Cond(cond.text, extra={"text_mask": cond.extra["text_mask"]}))
    with pytest.raises(ValueError, match="text_mask"):
        den(x_t, s, Cond(cond.text))
    image = torch.randn(B, C, 1, H, W)
    with pytest.raises(ModelError, match="text-to-video only"):
        den(x_t, s, Cond(cond.text, image=image, extra=cond.extra))


def test_token_replace_i2v():
    den = make(image_condition_type="token_replace")
    x_t, s, cond = inputs(den)
    image = torch.randn(B, C, 1, H, W)
    with torch.no_grad():
        ours = den(x_t, s, Cond(cond.text, image=image, extra=cond.extra))
        # without an image the stock token_replace model runs too (first frame modulated as clean)
        torch.testing.assert_close(den(x_t, s, cond), stock(den.model, x_t, s, cond), atol=1e-6, rtol=0)
    ref = stock(den.model, torch.cat([image, x_t[:, :, 1:]], dim=2), s, cond)
    assert torch.equal(ours[:, :, 0], torch.zeros_like(ours[:, :, 0]))
    torch.testing.assert_close(ours[:, :, 1:], ref[:, :, 1:], atol=1e-6, rtol=0)
