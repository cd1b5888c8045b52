"""icmd (VDMini) recipe on a tiny 4-block Shapes Wan with block 2 dropped."""
from __future__ import annotations

import json

import pytest
import torch

from fastlight.diffusion.flow import add_noise
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from fastlight.train.icmd import ICMD, IcmdConfig, IcmdRecipe, d_hinge_loss, g_nonsat_loss, icd_terms


def _cfg(tiny4, tmp_path, **kw):
    path, plan = tiny4
    base = dict(out=str(tmp_path / "run"), teacher=str(path), plan=str(plan), batch_size=2, steps=3, save_every=3,
                log_every=1, lr=1e-3, ema_decay=0.0, cpu=True, threads=1, mca_warmup_steps=1, disc_channels=8)
    return IcmdConfig(**{**base, **kw})


def test_student_layers_and_starts_equal_to_teacher_with_skip(tiny4, tmp_path):
    r = IcmdRecipe(_cfg(tiny4, tmp_path))
    assert r.student.num_blocks == 3 and r.student.model.config.num_layers == 3 and r.kept_ids == [0, 1, 3]
    assert r.optimized()["generator"].module is r.student
    b = r.batch(0)
    x_t = add_noise(b["x0"], b["eps"], b["s"])
    cond = Cond(b["text"], b["x0"][:, :, :1])
    with torch.no_grad():
        v_s = r.student(x_t, b["s"], cond)
        v_skip = r.teacher(x_t, b["s"], cond, skip={2})
        v_full = r.teacher(x_t, b["s"], cond)
    assert torch.allclose(v_s, v_skip, atol=1e-5)
    assert not torch.allclose(v_s, v_full, atol=1e-4)


def test_icd_zero_before_first_dropped_block_positive_after(tiny4, tmp_path):
    r = IcmdRecipe(_cfg(tiny4, tmp_path))
    b = r.batch(0)
    x_t = add_noise(b["x0"], b["eps"], b["s"])
    cond = Cond(b["text"], b["x0"][:, :, :1])
    with torch.no_grad():
        _, h_t = r.teacher(x_t, b["s"], cond, capture=r.kept_ids)
        _, h_s = r.student(x_t, b["s"], cond, capture=range(3))
    terms = [t.item() for t in icd_terms(h_s, h_t, r.kept_ids)]
    # student blocks 0, 1 are teacher blocks 0, 1 on identical inputs; student block 2 is teacher
    # block 3 but its input lacks teacher block 2's residual update
    assert terms[0] == pytest.approx(0.0, abs=1e-10) and terms[1] == pytest.approx(0.0, abs=1e-10)
    assert terms[2] > 1e-6
    out = r.step(b, 0)
    assert out["icd"].item() == pytest.approx(sum(terms) / 3, rel=1e-4)


def test_hinge_and_generator_losses_on_fixed_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    # relu(1 - real) = [0, .5, 2] -> mean 5/6 ; relu(1 + fake) = [0, 1, 2.5] -> mean 7/6
    assert d_hinge_loss(real, fake).item() == pytest.approx(2.0)
    want = sum(-torch.log(torch.sigmoid(torch.tensor(x))).item() for x in [-2.0, 0.0, 1.5]) / 3
    assert g_nonsat_loss(fake).item() == pytest.approx(want, rel=1e-6)
    assert g_nonsat_loss(torch.tensor([0.0])).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_mca_inactive_before_warmup_then_disc_loss_and_teacher_gets_no_grad(tiny4, tmp_path):
    r = IcmdRecipe(_cfg(tiny4, tmp_path, mca_warmup_steps=1))
    parts = r.optimized()
    assert parts["generator"].module is r.student and parts["discriminator"].module is r.disc
    assert parts["discriminator"].loss == "mca_disc" and parts["discriminator"].lr == 1e-5
    out = r.step(r.batch(0), 0)  # optimizer step 0 < warmup: no MCA, D not trained
    assert "mca_gen" not in out and "mca_disc" not in out
    assert torch.allclose(out["loss"], out["task"] + 0.1 * out["icd"])

    out = r.step(r.batch(1), 1)
    assert out["mca_gen"].item() > 0 and out["mca_disc"].item() > 0
    assert torch.allclose(out["loss"], out["task"] + 0.1 * out["icd"] + 1.0 * out["mca_gen"], rtol=1e-5)
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in r.teacher.parameters())
    assert all(p.grad is None for p in r.disc.parameters())  # the generator loss does not train D
    g = r.student.model.blocks[2].ffn.net[0].proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    r.student.zero_grad(set_to_none=True)
    out["mca_disc"].backward()  # D's hinge loss reads the student's predictions detached
    assert all(p.grad is not None for p in r.disc.parameters())
    assert all(p.grad is None for p in r.student.parameters())


def test_train_end_to_end_writes_stock_folder(tiny4, tmp_path):
    from diffusers import WanTransformer3DModel

    from fastlight.train.loop import train

    cfg_cls, recipe_cls = ICMD
    cfg = _cfg(tiny4, tmp_path, mca_warmup_steps=1)
    out = train(recipe_cls(cfg), cfg, progress=False)
    m = WanTransformer3DModel.from_pretrained(out)
    assert m.config.num_layers == 3
    assert json.loads((out / "plan.json").read_text())["drop_blocks"] == [2]
    man = json.loads((out / "manifest.json").read_text())
    assert man["recipe"] == "icmd" and man["lambda_icd"] == 0.1 and man["lambda_mca"] == 1.0
    assert man["steps"] == 3 and "wall_time_s" in man and man["kept_blocks"] == [0, 1, 3]
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "mca_gen" not in lines[0] and lines[1]["mca_gen"] > 0 and lines[2]["mca_disc"] > 0
    assert "grad_norm_discriminator" not in lines[1]  # D is not clipped (grad_clip=0)
    assert load_denoiser(out).num_blocks == 3
    ck = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert {"discriminator.safetensors", "optimizer-discriminator.pt"} <= {f.name for f in ck.iterdir()}


def test_resume_restores_the_discriminator_exactly(tiny4, tmp_path):
    """2 steps, then resume to 4 == 4 steps straight: the student and D (+ its Adam state)."""
    from safetensors.torch import load_file

    from fastlight.train.loop import train

    for out, steps in (("a", 4), ("b", 2), ("b", 4)):
        cfg = _cfg(tiny4, tmp_path, out=str(tmp_path / out), steps=steps, save_every=2, mca_warmup_steps=1,
                   lr_schedule="constant")  # a cosine schedule depends on `steps`
        train(IcmdRecipe(cfg), cfg, progress=False)
    for name in ("model.safetensors", "discriminator.safetensors"):
        a, b = (load_file(str(tmp_path / d / "checkpoints" / "step-00000004" / name)) for d in "ab")
        assert all(torch.equal(a[k], b[k]) for k in a), name
