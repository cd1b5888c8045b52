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
    assert r.trainable() is r.student
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
    out = r.step(b)
    assert out["icd"].item() == pytest.approx(sum(terms) / 3, rel=1e-4)


def test_hinge_and_generator_losses_on_fixed_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.5])
    # relu(1 - real) = [0, .5, 2] -> mean 5/6 ; relu(1 + fake) = [0, 1, 2.5] -> mean 7/6
    assert d_hinge_loss(real, fake).item() == pytest.approx(2.0)
    want = sum(-torch.log(torch.sigmoid(torch.tensor(x))).item() for x in [-2.0, 0.0, 1.5]) / 3
    assert g_nonsat_loss(fake).item() == pytest.approx(want, rel=1e-6)
    assert g_nonsat_loss(torch.tensor([0.0])).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_mca_inactive_before_warmup_then_disc_steps_and_teacher_gets_no_grad(tiny4, tmp_path):
    r = IcmdRecipe(_cfg(tiny4, tmp_path, mca_warmup_steps=1))
    d0 = {k: v.clone() for k, v in r.disc.state_dict().items()}
    out = r.step(r.batch(0))  # opt step 0 < warmup
    assert out["mca_gen"].item() == 0.0 and out["mca_disc"].item() == 0.0
    assert all(torch.equal(v, r.disc.state_dict()[k]) for k, v in d0.items())  # D untouched
    task_icd = out["task"] + 0.1 * out["icd"]
    assert torch.allclose(out["loss"], task_icd)

    out = r.step(r.batch(1))
    assert out["mca_gen"].item() > 0 and out["mca_disc"].item() > 0
    assert torch.allclose(out["loss"], out["task"] + 0.1 * out["icd"] + 1.0 * out["mca_gen"], rtol=1e-5)
    assert any(not torch.equal(v, r.disc.state_dict()[k]) for k, v in d0.items())  # D stepped
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in r.teacher.parameters())
    assert all(p.grad is None for p in r.disc.parameters())  # the generator loss does not train D
    g = r.student.model.blocks[2].ffn.net[0].proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    st = r.extra_state()
    r2 = IcmdRecipe(_cfg(tiny4, tmp_path))
    r2.load_extra_state(st)
    assert all(torch.equal(v, r2.disc.state_dict()[k]) for k, v in r.disc.state_dict().items())


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
    assert lines[0]["mca_gen"] == 0.0 and lines[1]["mca_gen"] > 0 and lines[2]["mca_disc"] > 0
    assert load_denoiser(out).num_blocks == 3


def test_discriminator_state_is_checkpointed_and_restored(tmp_path):
    """The loop saves recipe.extra_state() with each checkpoint and restores it on resume."""
    import torch

    from fastlight.train import loop

    class R:
        def __init__(self):
            self.disc = torch.nn.Linear(2, 2)

        def extra_state(self):
            return {"disc": self.disc.state_dict()}

        def load_extra_state(self, state):
            self.disc.load_state_dict(state["disc"])

    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters())
    cfg = loop.LoopConfig(out=str(tmp_path))
    a = R()
    ck = loop.save_checkpoint(tmp_path, 5, model, None, opt, cfg, 1.0, a.extra_state())
    b = R()
    assert not torch.equal(a.disc.weight, b.disc.weight)
    loop.load_checkpoint(ck, model, None, opt, b)
    assert torch.equal(a.disc.weight, b.disc.weight)
