"""Stage III DMD (fastlightgen / dmd2) on a tiny 4-block Shapes Wan with block 2 dropped."""
from __future__ import annotations

import json

import pytest
import torch

from fastlight.diffusion.flow import add_noise
from fastlight.diffusion.spec import SamplerSpec
from fastlight.distill.dmd import (DMD2, FASTLIGHTGEN, DmdConfig, DmdRecipe, backward_simulation, cfg_v,
                                   critic_loss, dmd_grad, dmd_generator_loss, well_guided_v)
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from tests.benchmark_scripts import load_benchmark


def _cfg(tiny4, tmp_path, **kw):
    path, plan = tiny4
    base = dict(out=str(tmp_path / "run"), teacher=str(path), plan=str(plan), batch_size=1, steps=3, save_every=3,
                log_every=1, lr=1e-3, critic_lr=1e-3, ema_decay=0.0, cpu=True, threads=2, critic_steps=2)
    return DmdConfig(**{**base, **kw})


def _inputs(r):
    b = r.batch(0)
    cond = Cond(b["text"], b["image"])
    s = torch.tensor([0.6])
    x_t = add_noise(torch.zeros_like(b["noise"]), b["noise"], s)
    return x_t, s, cond


def test_well_guided_v_endpoints(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path))
    x_t, s, cond = _inputs(r)
    beta1 = torch.tensor([2.5])
    with torch.no_grad():
        p = cfg_v(r.real, x_t, s, cond, beta1, skip={2})
        u = cfg_v(r.real, x_t, s, cond, beta1)
        # CFG by hand: separate cond and uncond forwards
        vc, vu = r.real(x_t, s, cond, skip={2}), r.real(x_t, s, r.real.null_cond(cond), skip={2})
        assert torch.allclose(p, vu + 2.5 * (vc - vu), atol=1e-4)
        assert not torch.allclose(p, u, atol=1e-4)
        assert torch.allclose(well_guided_v(r.real, x_t, s, cond, [2], beta1, 0.0), p, atol=1e-5)
        assert torch.allclose(well_guided_v(r.real, x_t, s, cond, [2], beta1, 1.0), u, atol=1e-5)
        mid = well_guided_v(r.real, x_t, s, cond, [2], beta1, 0.25)
        assert torch.allclose(mid, p + 0.25 * (u - p), atol=1e-5)
        # the pruned evaluation of the real score equals G (the pruned copy) at initialisation
        assert torch.allclose(r.G(x_t, s, cond), r.real(x_t, s, cond, skip={2}), atol=1e-5)


def test_dmd_generator_loss_gradient_is_grad():
    torch.manual_seed(1)
    x0_g = torch.randn(2, 3, 4, 5, 5, requires_grad=True)
    x0_real, x0_fake = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5)
    dmd_generator_loss(x0_g, x0_real, x0_fake).backward()
    norm = (x0_g.detach() - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    expected = (x0_fake - x0_real) / norm
    assert torch.allclose(dmd_grad(x0_g, x0_real, x0_fake), expected)
    assert torch.allclose(x0_g.grad * x0_g.numel(), expected, atol=1e-5)
    # guard: x0_g == x0_real gives 0/0 -> finite
    assert torch.isfinite(dmd_grad(x0_real, x0_real, x0_fake)).all()


def test_critic_loss_is_flow_matching():
    x0, eps = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    assert critic_loss(eps - x0, x0, eps) == 0
    assert torch.isclose(critic_loss(eps - x0 + 1, x0, eps), torch.tensor(1.0))


def test_backward_simulation(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path))
    b = r.batch(0)
    cond = Cond(b["text"], b["image"])
    noise = b["noise"]
    x, s = backward_simulation(r.G, noise, cond, r.s_list, 0, torch.Generator().manual_seed(0))
    assert s.tolist() == [1.0]
    assert torch.equal(x[:, :, 1:], noise[:, :, 1:]) and torch.equal(x[:, :, :1], b["image"])
    x2, s2 = backward_simulation(r.G, noise, cond, r.s_list, 2, torch.Generator().manual_seed(0))
    assert s2.tolist() == [0.5] and not x2.requires_grad and x2.grad_fn is None
    assert torch.equal(x2[:, :, :1], b["image"])
    # deterministic given the generator
    x3, _ = backward_simulation(r.G, noise, cond, r.s_list, 2, torch.Generator().manual_seed(0))
    assert torch.equal(x2, x3)
    with pytest.raises(ValueError):
        backward_simulation(r.G, noise, cond, r.s_list, 4)


def test_critic_only_step_returns_only_the_critic_loss(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path))
    out = r.step(r.batch(1), 1)  # critic_steps=2: optimizer step 1 trains the critic only
    assert "loss" not in out and "dmd" not in out and float(out["critic"].detach()) > 0
    out["critic"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in r.critic.parameters())
    assert all(p.grad is None for p in r.G.parameters())  # the critic reads G's sample detached
    assert all(p.grad is None for p in r.real.parameters())


def test_generator_step_gives_G_gradient(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path))
    out = r.step(r.batch(0), 0)  # optimizer step 0: a generator step (and a critic step)
    assert float(out["dmd"]) > 0 and out["loss"].requires_grad and "critic" in out
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in r.G.parameters())
    assert all(p.grad is None for p in r.real.parameters())
    assert all(p.grad is None for p in r.critic.parameters())


def test_train_end_to_end_writes_stock_folder(tiny4, tmp_path):
    from diffusers import WanTransformer3DModel

    from fastlight.train.loop import train

    cfg_cls, recipe_cls = FASTLIGHTGEN
    cfg = _cfg(tiny4, tmp_path)
    out = train(recipe_cls(cfg), cfg, progress=False)
    m = WanTransformer3DModel.from_pretrained(out)
    assert m.config.num_layers == 3
    assert json.loads((out / "sampler.json").read_text()) == {
        "sampler": "few_step", "num_steps": 4, "guidance": 1.0, "timesteps": [1000, 750, 500, 250]}
    assert SamplerSpec.load(out).levels == [1.0, 0.75, 0.5, 0.25]
    assert json.loads((out / "plan.json").read_text())["drop_blocks"] == [2]
    man = json.loads((out / "manifest.json").read_text())
    assert man["recipe"] == "fastlightgen" and man["beta2"] == 0.25 and man["steps"] == 3
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["dmd" in ln for ln in lines] == ["loss" in ln for ln in lines] == [True, False, True]
    assert all("critic" in ln and "x0_std" in ln and "beta1" in ln for ln in lines)
    assert ["grad_norm" in ln for ln in lines] == [True, False, True]  # G clipped where it was updated
    ck = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert {"critic.safetensors", "optimizer-critic.pt", "extra.pt"} <= {f.name for f in ck.iterdir()}


def test_critic_only_step_leaves_G_unchanged_with_adam_momentum(tiny4, tmp_path):
    """G's AdamW is not stepped on a critic-only step, whatever its beta1 and weight decay (no zero-loss
    steps): G is unchanged from step 1 to 2 and changes at step 3; the critic changes every step."""
    from safetensors.torch import load_file

    from fastlight.train.loop import train

    cfg = _cfg(tiny4, tmp_path, steps=3, save_every=1, keep_last=3, beta1=0.9, weight_decay=0.1)
    train(DmdRecipe(cfg), cfg, progress=False)
    ck = tmp_path / "run" / "checkpoints"
    load = lambda step, f: load_file(str(ck / f"step-{step:08d}" / f))  # noqa: E731
    a, b, c = (load(i, "model.safetensors") for i in (1, 2, 3))
    assert all(torch.equal(a[k], b[k]) for k in a) and any(not torch.equal(b[k], c[k]) for k in b)
    ca, cb = load(1, "critic.safetensors"), load(2, "critic.safetensors")
    assert any(not torch.equal(ca[k], cb[k]) for k in ca)
    assert torch.load(ck / "step-00000002" / "optimizer.pt", weights_only=True)["state"][0]["step"] == 1
    assert torch.load(ck / "step-00000002" / "optimizer-critic.pt", weights_only=True)["state"][0]["step"] == 2


def test_dmd2_baseline_unpruned(tiny4, tmp_path):
    cfg_cls, recipe_cls = DMD2
    path, _ = tiny4
    cfg = cfg_cls(out=str(tmp_path / "run"), teacher=str(path), batch_size=1, steps=1, cpu=True, threads=2)
    r = recipe_cls(cfg)
    assert cfg.plan == "" and cfg.guide_beta2 == 0 and r.drop_blocks == [] and r.G.num_blocks == 4
    out = r.step(r.batch(0), 0)
    assert float(out["dmd"]) > 0


def test_stage2_model_accepts_the_plan_it_was_trained_with(tiny4, tmp_path, shapes_model_factory):
    """A Stage II model's weights differ from the teacher's, but its architecture does not: the plan it
    carries (plan=''), or the teacher's plan named explicitly, is accepted; a plan for another
    architecture is not."""
    import shutil

    from fastlight.distill.dmd import DmdRecipe

    path, plan = tiny4
    stage2 = load_denoiser(path)
    with torch.no_grad():
        for p in stage2.model.parameters():
            p.add_(0.01)
    stage2.save(tmp_path / "stage2", dict(stage2.meta))
    shutil.copy(plan, tmp_path / "stage2" / "plan.json")
    r = DmdRecipe(_cfg(tiny4, tmp_path, teacher=str(tmp_path / "stage2"), plan=""))
    assert r.drop_blocks == [2] and r.plan_source == str(tmp_path / "stage2" / "plan.json")
    (tmp_path / "stage2" / "plan.json").unlink()  # Stage II keeps the architecture: the teacher's plan fits it
    assert DmdRecipe(_cfg(tiny4, tmp_path, teacher=str(tmp_path / "stage2"), plan=str(plan))).drop_blocks == [2]
    with pytest.raises(ValueError, match="carries no plan.json"):
        DmdRecipe(_cfg(tiny4, tmp_path, teacher=str(tmp_path / "stage2"), plan=""))
    other = shapes_model_factory(tmp_path / "three", num_layers=3)  # another architecture: refused
    with pytest.raises(ValueError, match="was made for"):
        DmdRecipe(_cfg(tiny4, tmp_path, teacher=str(other), plan=str(plan)))


def test_shared_prefix_well_guided_v_equals_unshared(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path))
    x_t, s, cond = _inputs(r)
    beta1 = torch.tensor([3.0])
    with torch.no_grad():
        a = well_guided_v(r.real, x_t, s, cond, [2], beta1, 0.25, shared=True)
        b = well_guided_v(r.real, x_t, s, cond, [2], beta1, 0.25, shared=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_score_init_unpruned_uses_unpruned_critic_and_teacher(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path, score_init="unpruned"))
    assert r.G.num_blocks == 3 and r.critic.num_blocks == 4 and r.beta2 == 1.0
    assert float(r.step(r.batch(0), 0)["dmd"]) > 0
    p = DmdRecipe(_cfg(tiny4, tmp_path))
    assert p.critic.num_blocks == 3 and p.beta2 == 0.25


def test_gan_head_trains_and_pushes_G(tiny4, tmp_path):
    r = DmdRecipe(_cfg(tiny4, tmp_path, gan_weight=0.1, gan_critic_weight=1.0))
    out = r.step(r.batch(0), 0)  # a generator step
    assert "gan_g" in out and float(out["gan_g"]) > 0
    out["loss"].backward()  # G's loss through the frozen critic and head trains neither
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in r.G.parameters())
    assert all(p.grad is None for p in list(r.gan_head.parameters()) + list(r.critic.parameters()))
    out["critic"].backward()  # the critic's loss (with the head's classification) trains both
    assert all(p.grad is not None for p in r.gan_head.parameters())
    assert "gan_head" in r.optimized() and r.optimized()["gan_head"].loss == "critic"
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in r.real.parameters())


def test_collapse_guard_stops_with_a_clear_message(tiny4, tmp_path):
    from fastlight.distill.dmd import CollapseError

    r = DmdRecipe(_cfg(tiny4, tmp_path, collapse_std=1e9, collapse_patience=2, critic_steps=1))
    r.step(r.batch(0), 0)
    with pytest.raises(CollapseError, match="collapsed at optimizer step 2"):
        r.step(r.batch(1), 1)


def _blob_clip():
    """A smooth clip: a soft bright disc moving over a dim background, (1, 3, 4, 24, 24)."""
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    frames = [(-0.8 + 1.4 * torch.sigmoid(4 - ((xx - 6 - 3 * f) ** 2 + (yy - 12) ** 2).sqrt())) for f in range(4)]
    return torch.stack(frames).expand(3, -1, -1, -1)[None].contiguous()


def test_sample_stats_tell_flat_frames_and_noise_from_the_data():
    from fastlight.distill.dmd import sample_stats

    data = _blob_clip()
    same = sample_stats(data, data)
    assert all(abs(float(same[f"x0_{k}_ratio"]) - 1) < 1e-6 for k in ("std", "contrast", "roughness"))
    for flat in (torch.zeros_like(data), torch.full_like(data, 0.4)):  # black, one colour
        st = sample_stats(flat, data)
        assert float(st["x0_contrast_ratio"]) == 0 and float(st["x0_roughness_ratio"]) == 0
    noise = sample_stats(torch.randn(data.shape, generator=torch.Generator().manual_seed(0)), data)
    assert float(noise["x0_roughness"]) == pytest.approx(1.0, abs=0.1)  # white noise: 1 by construction
    assert float(noise["x0_roughness_ratio"]) > 5 and float(noise["x0_std_ratio"]) > 1.5
    scaled = sample_stats(20 * data, data)  # blown up, not rougher: the std ratio says it
    assert float(scaled["x0_std_ratio"]) == pytest.approx(20, rel=1e-4)
    assert float(scaled["x0_roughness_ratio"]) == pytest.approx(1, rel=1e-4)


class _Collapse:
    """A forward hook that replaces G's x0 prediction by `make(x0)` once `on` (G's output is its velocity v,
    x0 = x - s v, so the hook returns (x - make(x0)) / s)."""

    def __init__(self, make):
        self.make, self.on = make, False

    def __call__(self, module, args, v):
        if not self.on:
            return v
        x, s = args[0].float(), args[1].float().reshape(-1, 1, 1, 1, 1)
        x0 = x - s * v.float()
        return ((x - self.make(x0)) / s).to(v.dtype)


@pytest.mark.parametrize("mode, message", [
    ("black", "per-frame contrast 0x the data's"),
    ("one_colour", "one colour or black frames"),
    ("scaled", "sample std"),
    ("noise", "noise"),
    ("nan", "not finite"),
])
def test_collapse_guard_stops_a_forced_collapse(tiny4, tmp_path, mode, message):
    """G healthy on step 1 (the guard's reference), then its samples forced flat / blown up / noise /
    NaN: the default guard stops the run, through the loop, with one line naming the step, the
    statistic and the fix; NaN at once, the others after collapse_patience generator steps."""
    from fastlight.distill.dmd import CollapseError
    from fastlight.train.loop import train

    gen = torch.Generator().manual_seed(0)
    make = {"black": lambda x0: torch.zeros_like(x0), "one_colour": lambda x0: torch.full_like(x0, 0.4),
            "scaled": lambda x0: 50 * x0, "noise": lambda x0: 3 * torch.randn(x0.shape, generator=gen),
            "nan": lambda x0: torch.full_like(x0, float("nan"))}[mode]
    cfg = _cfg(tiny4, tmp_path, steps=8, save_every=8, critic_steps=1, collapse_patience=2)
    r = DmdRecipe(cfg)
    hook = _Collapse(make)
    r.G.register_forward_hook(hook)
    step = r.step

    def forced(batch, opt_step):
        hook.on = opt_step >= 1
        return step(batch, opt_step)
    r.step = forced
    with pytest.raises(CollapseError) as e:
        train(r, cfg, progress=False)
    msg = str(e.value)
    at = 2 if mode == "nan" else 3  # step 1 is healthy; patience 2
    assert f"collapsed at optimizer step {at}:" in msg and message in msg, msg
    assert "lower lr" in msg and "check the teacher" in msg and "\n" not in msg


def test_collapse_guard_quiet_on_a_healthy_run_and_logs_each_generator_step(tiny4, tmp_path):
    """The defaults on: 6 steps of an unchanged recipe never fire; every generator step (1, 3, 5 with
    critic_steps=2) is logged with the guard's statistics though log_every=10; the guard's state is
    checkpointed and restored."""
    from fastlight.train.loop import train

    cfg = _cfg(tiny4, tmp_path, steps=6, save_every=6, log_every=10)
    r = DmdRecipe(cfg)
    train(r, cfg, progress=False)
    lines = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [1, 3, 5, 6]
    keys = {"x0_std", "x0_contrast", "x0_roughness", "data_std", "x0_std_ratio", "x0_contrast_ratio",
            "x0_roughness_ratio"}
    assert all(keys <= set(ln) for ln in lines) and all("dmd" in ln for ln in lines[:3])
    state = r.extra_state()
    assert set(state["collapse_start"]) == {"x0_std", "x0_std_ratio", "x0_contrast_ratio", "x0_roughness_ratio"}
    again = DmdRecipe(cfg)
    again.load_extra_state(torch.load(sorted((tmp_path / "run" / "checkpoints").iterdir())[-1] / "extra.pt",
                                      weights_only=True))
    assert again.extra_state() == state


@pytest.mark.parametrize("override, message", [("collapse_low=1.5", "collapse_low"), ("collapse_high=0.5", "collapse_high")])
def test_collapse_thresholds_checked(tiny4, tmp_path, override, message):
    from fastlight.errors import ConfigError

    key, value = override.split("=")
    with pytest.raises(ConfigError, match=message):
        DmdRecipe(_cfg(tiny4, tmp_path, **{key: float(value)}))


def test_resume_restores_critic_exactly(tiny4, tmp_path):
    """2 steps, then resume to 4 == 4 steps straight: G, its EMA and the critic (+ its Adam state)."""
    from safetensors.torch import load_file

    from fastlight.train.loop import train

    straight = _cfg(tiny4, tmp_path, out=str(tmp_path / "a"), steps=4, save_every=2, ema_decay=0.9)
    train(DmdRecipe(straight), straight, progress=False)
    first = _cfg(tiny4, tmp_path, out=str(tmp_path / "b"), steps=2, save_every=2, ema_decay=0.9)
    train(DmdRecipe(first), first, progress=False)
    resumed = _cfg(tiny4, tmp_path, out=str(tmp_path / "b"), steps=4, save_every=2, ema_decay=0.9)
    train(DmdRecipe(resumed), resumed, progress=False)
    for name in ("model.safetensors", "ema.safetensors", "critic.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoints" / "step-00000004" / name))
        b = load_file(str(tmp_path / "b" / "checkpoints" / "step-00000004" / name))
        assert all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(tmp_path / "a" / "checkpoints" / "step-00000004" / "optimizer-critic.pt", weights_only=True)
    ob = torch.load(tmp_path / "b" / "checkpoints" / "step-00000004" / "optimizer-critic.pt", weights_only=True)
    assert all(torch.equal(v, ob["state"][i][k]) for i, st in oa["state"].items() for k, v in st.items())


@pytest.mark.parametrize("override, message", [
    ("timesteps=[750,1000]", "strictly decreasing"),
    ("timesteps=[1000,0]", "must lie in"),
    ("beta1_min=3.5", "beta1_min <= beta1_max"),
    ("critic_steps=0", "critic_steps must be >= 1"),
    ("plan=", "carries no plan.json"),
])
def test_distill_bad_input_one_line(tiny4, tmp_path, capsys, override, message):
    from fastlight.cli import main

    path, plan = tiny4
    args = ["distill", "--recipe", "fastlightgen", f"teacher={path}", f"plan={plan}", f"out={tmp_path / 'r'}",
            "beta1_max=3.0", "steps=1", "cpu=true", override]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r" / "model").exists()


def test_distill_verb_refuses_stage2_recipes(capsys):
    from fastlight.cli import main

    assert main(["distill", "--recipe", "dpp"]) == 2
    assert "fastlightgen" in capsys.readouterr().err


def test_dmd_cost_benchmark_counts_block_evaluations(tiny4, tmp_path):
    """benchmarks/dmd_cost.py on the tiny 4-block model, G drops block 2 (k = 1):
    G no-grad + G grad + critic + fake = 4 x 3/4; real cond+uncond: shared 2x(2 + 1 + 2)/4, unshared 2x(3 + 4)/4."""
    mod = load_benchmark("dmd_cost")
    path, _ = tiny4
    res = mod.main(["--model", str(path), "--drop", "2", "--batch-size", "2", "--repeats", "1"])
    fe = {r["case"]: r["forward_equivalents"] for r in res["rows"]}
    assert fe["teacher forward (unit)"] == 1.0
    assert fe["generator iteration, shared prefix"] == pytest.approx(3.0 + 2.5)
    assert fe["generator iteration, no sharing"] == pytest.approx(3.0 + 3.5)
    assert res["block_evals_saved"] == pytest.approx(1 - 5.5 / 6.5)


def test_dmd2_is_step_only_and_refuses_a_plan(tiny4, tmp_path):
    path, plan = tiny4
    base = dict(out=str(tmp_path / "run"), teacher=str(path), batch_size=1, steps=1, cpu=True, threads=2)
    assert DMD2[1](DMD2[0](**base)).drop_blocks == []
    with pytest.raises(ValueError, match="step-only baseline"):
        DMD2[1](DMD2[0](**base, plan=str(plan)))


def test_beta2_validation_benchmark_table_and_verdict(tiny4, tmp_path):
    """benchmarks/beta2_validation.py end to end on the tiny model (2 Stage III steps per beta2, 4
    validation cases): the Stage II folder is copied, not touched; 0 and 1 get paired intervals against
    0.25; a reused model is copied in place of its run; the JSON holds the table and the verdict."""
    import shutil

    from fastlight.analyze.plans import write_plan
    from fastlight.analyze.plans import read_plan

    mod = load_benchmark("beta2_validation")
    path, plan = tiny4
    stage2 = tmp_path / "stage2"
    shutil.copytree(path, stage2)
    write_plan(stage2, read_plan(plan, load_denoiser(path)))  # a Stage II folder carries its plan
    before = sorted((p.name, p.stat().st_mtime_ns) for p in stage2.iterdir())
    config = tmp_path / "run.yaml"
    config.write_text("method: fastlightgen\nstage3: {steps: 2, batch_size: 1, critic_steps: 1, timesteps: [1000, 500], "
                      "save_every: 2, ema_decay: 0.0, cpu: true}\n")
    # a finished "0.25" run to reuse: a 2-step run of the same settings
    ref = mod.train_student(stage2, tmp_path / "ref", mod.stage3_settings(str(config), "quick"), 0.25, 0, 1)
    out = tmp_path / "out"
    doc = mod.main(["--out", str(out), "--stage2", str(stage2), "--config", str(config), "--cases", "4",
                    "--threads", "1", "--reuse", f"0.25={ref}"])
    assert sorted((p.name, p.stat().st_mtime_ns) for p in stage2.iterdir()) == before
    assert sorted(doc["results"]) == ["0", "0.25", "1"] and sorted(doc["paired"]) == ["0", "1"]
    assert doc["stream"] == "validation" and doc["num_cases"] == 4 and doc["stage3"]["steps"] == 2
    assert not (out / "beta2_0.25" / "metrics.jsonl").exists()  # copied, not trained
    assert json.loads((out / "beta2_0.25" / "model" / "manifest.json").read_text())["beta2"] == 0.25
    for name in ("0", "1"):
        assert json.loads((out / f"beta2_{name}" / "model" / "manifest.json").read_text())["beta2"] == float(name)
        d = doc["paired"][name]["score"]
        assert d["low"] <= d["estimate"] <= d["high"]
        est = doc["results"][name]["score"] - doc["results"]["0.25"]["score"]
        assert d["estimate"] == pytest.approx(est, abs=1e-9)
    assert len(doc["table"]) == 5 and doc["table"][2].startswith("| 0 |") and "(reference)" in doc["table"][3]
    assert json.loads((out / "beta2_validation.json").read_text())["verdict"] == doc["verdict"]
    # the verdict rule: only a paired interval above 0 beats the reference
    iv = lambda lo, hi: {"score": {"estimate": (lo + hi) / 2, "low": lo, "high": hi}}  # noqa: E731
    assert mod.verdict({"0": iv(-0.01, 0.02), "1": iv(-0.05, -0.01)}, "0.25").startswith("keep beta2 = 0.25")
    assert "1 worse" in mod.verdict({"0": iv(-0.01, 0.02), "1": iv(-0.05, -0.01)}, "0.25")
    assert mod.verdict({"0": iv(0.001, 0.02)}, "0.25").startswith("beta2 0 beats 0.25")
