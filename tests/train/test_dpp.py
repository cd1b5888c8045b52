"""Stage II dynamic probabilistic pruning recipe on a tiny 2-block Shapes Wan."""
from __future__ import annotations

import json

import pytest
import torch

from fastlight.analyze.plans import depth_plan, write_plan
from fastlight.diffusion.flow import add_noise
from fastlight.errors import ConfigError
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from fastlight.train.entry import train_from_config
from fastlight.train.recipes import DppConfig, DppRecipe, draw_skips


@pytest.fixture()
def plan_path(tiny_shapes_model, tmp_path):
    model = load_denoiser(tiny_shapes_model)
    rows = [{"index": 0, "score": 1.0}, {"index": 1, "score": 0.1}]
    plan = depth_plan(rows, model, 0.05, keep_ends=False, verbose=False)
    assert plan["drop_blocks"] == [1]
    return write_plan(tmp_path / "plan.json", plan)


def _cfg(tiny_shapes_model, plan_path, tmp_path, **kw):
    base = dict(out=str(tmp_path / "run"), teacher=str(tiny_shapes_model), plan=str(plan_path), batch_size=4,
                steps=3, save_every=3, log_every=1, lr=1e-3, warmup_steps=0, ema_decay=0.0, cpu=True, threads=1)
    return DppConfig(**{**base, **kw})


def _hand(recipe, batch):
    m = recipe.model
    x0, eps, s = batch["x0"], batch["eps"], batch["s"]
    x_t = add_noise(x0, eps, s)
    cond = Cond(batch["text"], x0[:, :, :1])
    with torch.no_grad():
        v_u = m(x_t, s, cond)
        v_p = m(x_t, s, cond, skip={1})
    target = eps - x0
    return ((v_p - v_u)[:, :, 1:] ** 2).mean(), ((v_p - target)[:, :, 1:] ** 2).mean()


@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.3])
def test_loss_matches_hand_computation(tiny_shapes_model, plan_path, tmp_path, alpha):
    r = DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path, alpha=alpha))
    batch = r.batch(0)
    batch["skips"] = [frozenset({1})]  # fixed skip draw
    distill, flow = _hand(r, batch)
    out = r.step(batch, 0)
    assert torch.allclose(out["loss"], alpha * distill + (1 - alpha) * flow, rtol=1e-5, atol=1e-7)
    assert torch.allclose(out["loss_distill"], distill, rtol=1e-5)
    batch["skips"] = [frozenset()]  # nothing skipped: pruned == unpruned, distillation term 0
    assert r.step(batch, 0)["loss_distill"].item() == 0.0


def test_unpruned_forward_has_no_grad_and_weights_shared(tiny_shapes_model, plan_path, tmp_path):
    r = DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path))
    seen = []
    orig = r.model.forward

    def spy(x_t, s, cond, skip=(), capture=None):
        v = orig(x_t, s, cond, skip, capture)
        seen.append((frozenset(skip), torch.is_grad_enabled(), v.requires_grad))
        return v

    r.model.forward = spy
    batch = r.batch(0)
    batch["skips"] = [frozenset({1})]
    r.model.zero_grad()
    r.step(batch, 0)["loss"].backward()
    assert seen == [(frozenset(), False, False), (frozenset({1}), True, True)]
    assert r.trainable() is r.model  # one set of weights for both paths
    g = r.model.model.blocks[0].ffn.net[0].proj.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert r.model.model.blocks[1].ffn.net[0].proj.weight.grad is None  # skipped block gets no gradient


def test_per_sample_draws_grouped(tiny_shapes_model, plan_path, tmp_path):
    r = DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path, per_sample=True))
    b = r.batch(5)
    assert len(b["skips"]) == 4
    b["skips"] = [frozenset({1}), frozenset(), frozenset({1}), frozenset()]
    out = r.step(b, 0)
    m = r.model
    x_t = add_noise(b["x0"], b["eps"], b["s"])
    cond = Cond(b["text"], b["x0"][:, :, :1])
    with torch.no_grad():
        v_p = torch.stack([m(x_t[i:i + 1], b["s"][i:i + 1], cond.index(slice(i, i + 1)), skip=b["skips"][i])[0]
                           for i in range(4)])
        v_u = m(x_t, b["s"], cond)
    assert torch.allclose(out["loss_distill"], ((v_p - v_u)[:, :, 1:] ** 2).mean(), rtol=1e-4, atol=1e-8)
    assert draw_skips(torch.tensor([[0.2, 0.7]]), [3, 5], 0.5) == [frozenset({3})]


def test_the_teacher_target_stays_frozen_while_the_weights_move(tiny_shapes_model, plan_path, tmp_path):
    # target=teacher: v_unpruned comes from a frozen copy of the starting weights, so after the shared
    # weights move the distillation target is still the teacher's velocity (shared: it moves with them)
    r = DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path, target="teacher", alpha=1.0))
    assert r.frozen() == {"target": r.target} and not any(q.requires_grad for q in r.target.parameters())
    batch = r.batch(0)
    batch["skips"] = [frozenset({1})]
    x_t = add_noise(batch["x0"], batch["eps"], batch["s"])
    cond = Cond(batch["text"], batch["x0"][:, :, :1])
    with torch.no_grad():
        v_teacher = r.model(x_t, batch["s"], cond)
        for q in r.trainable().parameters():  # the trained weights move
            q.add_(0.05 * torch.randn_like(q))
        v_p = r.model(x_t, batch["s"], cond, skip={1})
    out = r.step(batch, 0)
    assert torch.allclose(out["loss_distill"], ((v_p - v_teacher)[:, :, 1:] ** 2).mean(), rtol=1e-5)
    assert DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path)).frozen() == {}
    with pytest.raises(ConfigError, match="target must be one of shared, teacher"):
        DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path, target="ema"))


def test_batches_deterministic_by_step_and_rank(tiny_shapes_model, plan_path, tmp_path):
    r = DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path))
    a, b, c = r.batch(7), r.batch(7), r.batch(7, rank=1, world_size=2)
    assert torch.equal(a["x0"], b["x0"]) and torch.equal(a["eps"], b["eps"]) and a["skips"] == b["skips"]
    assert c["x0"].shape[0] == 2 and not torch.equal(c["x0"], a["x0"][:2])


def test_few_steps_reduce_alpha1_loss_on_fixed_batch(tiny_shapes_model, plan_path, tmp_path):
    r = DppRecipe(_cfg(tiny_shapes_model, plan_path, tmp_path))
    m = r.trainable()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    batch = r.batch(0)
    batch["skips"] = [frozenset({1})]
    losses = []
    for _ in range(8):
        loss = r.step(batch, 0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_train_from_config_writes_stock_diffusers_folder(tiny_shapes_model, plan_path, tmp_path):
    from diffusers import WanTransformer3DModel

    cfg = tmp_path / "dpp.yaml"
    cfg.write_text(f"teacher: {tiny_shapes_model}\nplan: {plan_path}\nsteps: 2\nbatch_size: 2\ncpu: true\n")
    out = train_from_config("dpp", str(cfg), [f"out={tmp_path / 'run'}", "save_every=1", "log_every=1", "threads=1",
                                              "ema_decay=0.9"], progress=False)
    assert out == tmp_path / "run" / "model"
    WanTransformer3DModel.from_pretrained(out)
    assert json.loads((out / "plan.json").read_text())["drop_blocks"] == [1]
    man = json.loads((out / "manifest.json").read_text())
    assert man["alpha"] == 1.0 and man["p"] == 0.5 and man["steps"] == 2 and "wall_time_s" in man
    assert load_denoiser(out).num_blocks == 2
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 2
    with pytest.raises(ValueError, match=r"unknown recipe 'nope'; available recipes: align, dmd2, dpp, fastlightgen, icmd, pretrain$"):
        train_from_config("nope", None, [])
