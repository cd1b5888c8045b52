"""`fastlight pretrain`: the flow-matching recipe `pretrain` of the training loop, on the Shapes source,
with the Shapes prompt probe as a logging hook; it computes what the old standalone loop computed."""
import json

import pytest
import torch
from safetensors.torch import load_file

from fastlight.diffusion.flow import add_noise
from fastlight.models.denoiser import Cond
from fastlight.models.wan import WanDenoiser
from fastlight.shapes.preset import SHAPES_TEACHER_CONFIG
from fastlight.train.checkpoint import list_checkpoints
from fastlight.train.entry import build_hooks, run_recipe, train_from_config
from fastlight.train.pretrain import PretrainConfig, PretrainRecipe

TINY = ["num_layers=2", "steps=4", "batch_size=4", "warmup_steps=2", "save_every=2", "log_every=1", "threads=1",
        "cpu=true", "hooks=[{_component_: shapes-probe, every: 2}]"]


def _cfg(tmp_path, name, **kw):
    base = dict(out=str(tmp_path / name), num_layers=2, steps=4, batch_size=4, warmup_steps=2, save_every=2,
                log_every=1, threads=1, cpu=True, meta={"kind": "shapes-teacher", "world": {"size": 24, "num_frames": 8}},
                hooks=[{"_component_": "shapes-probe", "every": 2}])
    return PretrainConfig(**{**base, **kw})


def test_pretrain_writes_model_and_manifest(tmp_path):
    out = train_from_config("pretrain", "configs/shapes/pretrain.yaml", [f"out={tmp_path / 'a'}", *TINY], progress=False)
    meta = json.loads((out / "fastlight.json").read_text())
    assert meta["steps"] == 4 and meta["world"] == {"size": 24, "num_frames": 8} and meta["kind"] == "shapes-teacher"
    assert len(meta["loss_curve"]) == 4 and meta["model_config"]["num_layers"] == 2
    assert (out / "config.json").exists() and (out / "diffusion_pytorch_model.safetensors").exists()
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert "prompt_sensitivity" not in rows[0] and "prompt_sensitivity" in rows[1]  # the hook, every 2 steps
    assert 0 <= rows[1]["probe_direction_acc"] <= 1


def test_resume_after_a_crash_gives_the_same_weights(tmp_path):
    ref = run_recipe("pretrain", _cfg(tmp_path, "ref"), progress=False)
    from fastlight.train.loop import train

    class Crash(PretrainRecipe):
        def step(self, batch, step):
            if step == 3:
                raise KeyboardInterrupt("simulated crash")
            return super().step(batch, step)
    cfg = _cfg(tmp_path, "b")
    with pytest.raises(KeyboardInterrupt):
        train(Crash(cfg), cfg, progress=False, hooks=build_hooks(cfg.hooks))
    assert [d.name for d in list_checkpoints(tmp_path / "b")] == ["step-00000002"]
    resumed = run_recipe("pretrain", _cfg(tmp_path, "b"), progress=False)
    a = load_file(str(ref / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(resumed / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_batch_same_weights_give_the_old_loss_and_gradients(tmp_path):
    """The old `fastlight.shapes.pretrain` built WanDenoiser.from_config(SHAPES_TEACHER_CONFIG, num_layers)
    after torch.manual_seed(init_seed) and minimised mean((v - (eps - x0))[:, :, 1:]^2) with
    Cond(text with dropped rows zeroed, x0[:, :, :1]). Same seed -> same initial weights; same batch ->
    the same loss and gradients, bit for bit."""
    recipe = PretrainRecipe(_cfg(tmp_path, "r", cfg_dropout=0.5))
    torch.manual_seed(0)  # the old init_seed
    old = WanDenoiser.from_config(**dict(SHAPES_TEACHER_CONFIG, num_layers=2))
    new = recipe.model
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))

    batch = recipe.batch(3)
    raw = recipe.source.batch(3)
    dropped = (batch["text"] != raw["text"]).any(-1).any(-1)
    assert dropped.any() and (batch["text"][dropped] == 0).all()  # CFG dropout = the old zeroed text
    x0, txt, eps, s = raw["x0"], raw["text"].clone(), batch["eps"], batch["s"]
    txt[dropped] = 0.0
    x_t = add_noise(x0, eps, s)
    v = old(x_t, s, Cond(txt, x0[:, :, :1]))
    old_loss = (v[:, :, 1:] - (eps - x0)[:, :, 1:]).pow(2).mean()
    old_loss.backward()
    new_loss = recipe.step(batch, 3)["loss"]
    new_loss.backward()
    assert torch.equal(old_loss, new_loss)
    for (name, a), b in zip(old.named_parameters(), new.parameters()):
        assert (a.grad is None) == (b.grad is None) and (a.grad is None or torch.equal(a.grad, b.grad)), name


def test_batches_are_a_function_of_seed_and_step(tmp_path):
    r = PretrainRecipe(_cfg(tmp_path, "r", batch_size=3))
    b1, b2 = r.batch(5), r.batch(5)
    assert all(torch.equal(b1[k], b2[k]) for k in ("x0", "text", "eps", "s"))
    assert b1["x0"].shape == (3, 3, 8, 24, 24) and torch.equal(b1["image"], b1["x0"][:, :, :1])
    assert not torch.equal(r.batch(6)["x0"], b1["x0"])


def test_bad_hook_is_one_line():
    with pytest.raises(ValueError, match="shapes-probe: every must be >= 1"):
        build_hooks([{"_component_": "shapes-probe", "every": 0}])
    with pytest.raises(ValueError, match="must name its component"):
        build_hooks([{"every": 2}])
