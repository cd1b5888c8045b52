"""Lightning Video `align` recipe on a tiny 4-block Shapes Wan (width- and depth-pruned students)."""
from __future__ import annotations

import json

import pytest
import torch

from fastlight.analyze.plans import depth_plan, width_plan, write_plan
from fastlight.diffusion.flow import add_noise
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser, model_fingerprint
from fastlight.train.align import ALIGN, AlignConfig, AlignRecipe, block_pairs
from fastlight.train.loop import train


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory, shapes_model_factory):
    """A 4-block Shapes-world Wan (untrained), saved like the shipped teacher."""
    return shapes_model_factory(tmp_path_factory.mktemp("models") / "tiny4", num_layers=4)


@pytest.fixture(scope="module")
def plans(tiny4, tmp_path_factory):
    model = load_denoiser(tiny4)
    d = tmp_path_factory.mktemp("plans")
    H, F = model.model.config.num_attention_heads, model.model.config.ffn_dim
    gen = torch.Generator().manual_seed(1)
    scores = {i: {"heads": torch.rand(H, generator=gen), "ffn": torch.rand(F, generator=gen)} for i in range(4)}
    width = width_plan(scores, model, 0.05, prune_heads=False, verbose=False)
    total = model.num_params()
    full = {"type": "width", "fingerprint": model_fingerprint(model), "family": "wan", "prune_ratio": 0.01,
            "achieved_ratio": 0.0, "num_params_before": total, "num_params_after": total,
            "layers": {str(i): {"keep_heads": list(range(H)), "keep_ffn": list(range(F))} for i in range(4)}}
    rows = [{"index": i, "score": s} for i, s in enumerate([1.0, 0.1, 0.5, 0.9])]
    depth = depth_plan(rows, model, 0.05, keep_ends=False, verbose=False)
    assert depth["drop_blocks"] == [1]
    return {"width": write_plan(d / "width.json", width), "full": write_plan(d / "full.json", full),
            "depth": write_plan(d / "depth.json", depth)}


def _cfg(tiny4, plan, tmp_path, **kw):
    base = dict(out=str(tmp_path / "run"), teacher=str(tiny4), plan=str(plan), batch_size=2, steps=3,
                phase1_steps=2, save_every=3, log_every=1, lr=1e-3, warmup_steps=0, ema_decay=0.0, cpu=True, threads=1)
    return AlignConfig(**{**base, **kw})


def test_full_width_student_equals_teacher(tiny4, plans, tmp_path):
    r = AlignRecipe(_cfg(tiny4, plans["full"], tmp_path))
    assert r.student is not r.teacher and r.student.model.config.ffn_dim == 32
    out = r.step(r.batch(0), 0)
    assert out["out"].item() < 1e-10 and out["layer"].item() < 1e-10
    assert out["phase"].item() == 1.0 and out["fm"].item() > 0
    assert torch.allclose(out["loss"], out["fm"], rtol=1e-6, atol=1e-9)


def test_pruned_student_losses_match_hand(tiny4, plans, tmp_path):
    r = AlignRecipe(_cfg(tiny4, plans["width"], tmp_path, w_output=0.7, w_layer=0.3))
    k = r.student.model.config.ffn_dim
    assert k < 32 and r.pairs == [(i, i) for i in range(4)]
    b = r.batch(0)
    out = r.step(b, 0)
    x_t = add_noise(b["x0"], b["eps"], b["s"])
    cond = Cond(b["text"], b["x0"][:, :, :1])
    with torch.no_grad():
        v_t, h_t = r.teacher(x_t, b["s"], cond, capture=range(4))
        v_s, h_s = r.student(x_t, b["s"], cond, capture=range(4))
    fm = ((v_s - (b["eps"] - b["x0"]))[:, :, 1:] ** 2).mean()
    lo = ((v_s - v_t)[:, :, 1:] ** 2).mean()
    ll = torch.stack([((h_s[i] - h_t[i]) ** 2).mean() for i in range(4)]).mean()
    assert lo.item() > 0 and ll.item() > 0
    for key, val in (("fm", fm), ("out", lo), ("layer", ll), ("loss", fm + 0.7 * lo + 0.3 * ll)):
        assert torch.allclose(out[key], val, rtol=1e-5, atol=1e-9), key


def test_phase_switch_and_teacher_gets_no_grad(tiny4, plans, tmp_path):
    r = AlignRecipe(_cfg(tiny4, plans["width"], tmp_path, phase1_steps=2))
    assert [r.phase(i) for i in range(4)] == [1, 1, 2, 2]  # the optimizer step the loop passes
    calls = []
    orig = r.teacher.forward
    r.teacher.forward = lambda *a, **k: calls.append(torch.is_grad_enabled()) or orig(*a, **k)
    p1 = r.step(r.batch(1), 1)
    p1["loss"].backward()
    assert calls == [False] and p1["out"].item() > 0
    assert all(p.grad is None and not p.requires_grad for p in r.teacher.parameters())
    assert r.student.model.blocks[0].ffn.net[0].proj.weight.grad.abs().sum() > 0
    p2 = r.step(r.batch(2), 2)
    assert calls == [False]  # phase 2 does not run the teacher
    assert p2["phase"].item() == 2.0 and p2["out"].item() == 0.0 and p2["layer"].item() == 0.0
    assert torch.equal(p2["loss"], p2["fm"])


def test_depth_plan_block_pairs(tiny4, plans, tmp_path):
    r = AlignRecipe(_cfg(tiny4, plans["depth"], tmp_path))
    assert r.student.num_blocks == 3 and r.pairs == [(0, 0), (1, 2), (2, 3)]
    b = r.batch(0)
    out = r.step(b, 0)
    x_t, cond = add_noise(b["x0"], b["eps"], b["s"]), Cond(b["text"], b["x0"][:, :, :1])
    with torch.no_grad():  # the depth student is the teacher with block 1 skipped
        v_s, h_s = r.student(x_t, b["s"], cond, capture=[0, 1])
        v_k, h_k = r.teacher(x_t, b["s"], cond, skip={1}, capture=[0, 2])
    assert torch.allclose(v_s, v_k, atol=1e-5) and torch.allclose(h_s[1], h_k[2], atol=1e-5)
    assert out["out"].item() > 0 and out["layer"].item() > 0
    assert block_pairs({"type": "depth", "keep_blocks": [0, 2, 3]}, 4, [2]) == [(1, 2)]
    with pytest.raises(ValueError, match="align_blocks"):
        block_pairs({"type": "depth", "keep_blocks": [0, 2, 3]}, 4, [1])


def test_train_end_to_end_stock_loadable(tiny4, plans, tmp_path):
    from diffusers import WanTransformer3DModel

    cfg = _cfg(tiny4, plans["width"], tmp_path, ema_decay=0.9)
    assert ALIGN == (AlignConfig, AlignRecipe)
    out = train(AlignRecipe(cfg), cfg, progress=False)
    stock = WanTransformer3DModel.from_pretrained(out)
    assert stock.config.ffn_dim < 32 and stock.config.num_layers == 4
    assert stock.blocks[0].ffn.net[0].proj.out_features == stock.config.ffn_dim
    man = json.loads((out / "manifest.json").read_text())
    assert man["recipe"] == "align" and man["steps"] == 3 and man["phase1_steps"] == 2
    assert man["num_params"] == json.loads((out / "plan.json").read_text())["num_params_after"]
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [ln["phase"] for ln in lines] == [1.0, 1.0, 2.0]
    assert lines[2]["out"] == 0.0 and lines[0]["out"] > 0
    assert load_denoiser(out).num_blocks == 4
