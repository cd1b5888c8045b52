import pytest
import torch

from fastlight.analyze.taylor import (
    GramAccumulator,
    read_taylor,
    row_saliency,
    taylor_saliency,
    width_layout,
    write_taylor,
)
from fastlight.diffusion.flow import add_noise
from fastlight.models.wan import WanDenoiser, tiny_wan_config


def _capture_inputs(model, calib, modules):
    """Run the calibration forwards (full model) and record every input of `modules` in float64."""
    seen = {m: [] for m in modules}
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen[mod].append(inp[0].detach().double().reshape(-1, inp[0].shape[-1])))
             for m in modules]
    try:
        with torch.no_grad():
            for b in calib:
                model(add_noise(b.x0, b.eps, b.s), b.s, b.cond)
    finally:
        for h in hooks:
            h.remove()
    return {m: torch.cat(xs) for m, xs in seen.items()}


def _out_sq(lin, X):
    """Brute force: sum over tokens of each row's squared output (x w_i + b_i)^2, float64. (d_out,)"""
    Y = X @ lin.weight.double().T + lin.bias.double()
    return Y.pow(2).sum(0)


def test_row_saliency_equals_squared_output_norm():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=g, dtype=torch.float64)
    W, b = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    acc = GramAccumulator(6, "cpu")
    acc.update(X[:20])
    acc.update(X[20:].reshape(5, 6, 6))  # any leading shape: tokens are flattened
    brute = ((X @ W.T + b) ** 2).sum(0)
    torch.testing.assert_close(row_saliency(W, b, acc.G, acc.sx, acc.n), brute, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(row_saliency(W, None, acc.G, acc.sx, acc.n), ((X @ W.T) ** 2).sum(0), rtol=1e-12, atol=1e-12)


def test_wan_gram_equals_brute_force(wan, wan_calib):
    scores = taylor_saliency(wan, wan_calib, progress=False)
    blk = wan.model.blocks[1]
    a1, a2 = blk.attn1, blk.attn2
    rows = [a1.to_q, a1.to_k, a1.to_v, a2.to_q, a2.to_k, a2.to_v]
    X = _capture_inputs(wan, wan_calib, rows + [blk.ffn.net[0].proj, blk.ffn.net[2], a1.to_out[0], a2.to_out[0]])
    H, dh = a1.heads, a1.to_q.out_features // a1.heads
    # FFN units: rows of ffn.net[0].proj
    torch.testing.assert_close(scores[1]["ffn"], _out_sq(blk.ffn.net[0].proj, X[blk.ffn.net[0].proj]), rtol=1e-10, atol=1e-10)
    # heads: rows of the six q/k/v projections (each with ITS OWN input), summed per head
    heads = sum(_out_sq(lin, X[lin]).view(H, dh).sum(1) for lin in rows)
    torch.testing.assert_close(scores[1]["heads"], heads, rtol=1e-10, atol=1e-10)
    # output side: || X_g W_g^T ||^2 when head g's / unit g's input columns of the consumer layer are removed
    heads_out = torch.zeros(H, dtype=torch.float64)
    for lin in (a1.to_out[0], a2.to_out[0]):
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            heads_out[h] += (X[lin][:, sl] @ lin.weight.double()[:, sl].T).pow(2).sum()
    torch.testing.assert_close(scores[1]["heads_out"], heads_out, rtol=1e-10, atol=1e-10)
    W2 = blk.ffn.net[2].weight.double()
    ffn_out = torch.stack([(X[blk.ffn.net[2]][:, i:i + 1] @ W2[:, i:i + 1].T).pow(2).sum() for i in range(W2.shape[1])])
    torch.testing.assert_close(scores[1]["ffn_out"], ffn_out, rtol=1e-10, atol=1e-10)


def test_direct_mode_matches_gram(wan, wan_calib, hunyuan, hunyuan_calib):
    for model, calib in ((wan, wan_calib), (hunyuan, hunyuan_calib)):
        a = taylor_saliency(model, calib, accumulate="gram", progress=False)
        b = taylor_saliency(model, calib, accumulate="direct", progress=False)
        assert sorted(a) == list(range(model.num_blocks))
        for i in a:
            for k in ("heads", "ffn", "heads_out", "ffn_out"):
                torch.testing.assert_close(a[i][k], b[i][k], rtol=1e-6, atol=1e-8)
                assert (a[i][k] >= 0).all()


def test_hunyuan_layout_and_single_block_brute_force(hunyuan, hunyuan_calib):
    kinds = [width_layout(hunyuan, i).kind for i in range(4)]
    assert kinds == ["double", "double", "single", "single"]
    scores = taylor_saliency(hunyuan, hunyuan_calib, progress=False)
    blk = hunyuan.model.single_transformer_blocks[0]
    X = _capture_inputs(hunyuan, hunyuan_calib, [blk.proj_mlp, blk.attn.to_q, blk.attn.to_k, blk.attn.to_v])
    torch.testing.assert_close(scores[2]["ffn"], _out_sq(blk.proj_mlp, X[blk.proj_mlp]), rtol=1e-10, atol=1e-10)
    H = blk.attn.heads
    heads = sum(_out_sq(lin, X[lin]).view(H, -1).sum(1) for lin in (blk.attn.to_q, blk.attn.to_k, blk.attn.to_v))
    torch.testing.assert_close(scores[2]["heads"], heads, rtol=1e-10, atol=1e-10)
    L = width_layout(hunyuan, 2)
    assert L.params_per_ffn_unit == (blk.proj_mlp.in_features + 1) + blk.proj_out.out_features


def test_params_per_head_and_unit_wan(wan):
    L = width_layout(wan, 0)
    blk = wan.model.blocks[0]
    dim, dh = blk.attn1.to_q.in_features, L.head_dim
    # 2 attentions x (q, k, v rows + to_out columns + norm_q / norm_k weights)
    assert L.params_per_head == 2 * (3 * dh * (dim + 1) + dim * dh + 2 * dh)
    assert L.params_per_ffn_unit == (dim + 1) + dim


def test_write_read_taylor(wan, wan_calib, tmp_path):
    scores = taylor_saliency(wan, wan_calib, progress=False)
    p = write_taylor(tmp_path / "taylor.json", wan, scores, {"calib": wan_calib.info})
    back = read_taylor(p, wan)
    for i in scores:
        torch.testing.assert_close(back[i]["heads"], scores[i]["heads"])
        torch.testing.assert_close(back[i]["ffn"], scores[i]["ffn"])
    other = WanDenoiser.from_config(**tiny_wan_config(num_layers=4))
    with pytest.raises(ValueError, match="computed on another model"):
        read_taylor(p, other)
