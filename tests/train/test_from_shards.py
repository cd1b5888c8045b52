"""Every Stage II / III recipe trains a tiny NON-Shapes Wan (4 latent channels, text_dim 6, T2V) from
`fastlight preprocess` shards (data: {_component_: latents}); resume after SIGKILL is exact and two
gloo processes match one. Also runnable as a script (the child of the SIGKILL and 2-process tests)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastlight.models.load import load_denoiser
from fastlight.train.entry import available_recipes
from fastlight.train.checkpoint import list_checkpoints
from fastlight.train.loop import train

RECIPE_KW = {
    "dpp": dict(alpha=0.5, p=0.5),
    "icmd": dict(mca_warmup_steps=0, disc_channels=8),
    "align": dict(phase1_steps=2),
    "fastlightgen": dict(critic_steps=2, timesteps=[1000, 500], lr=1e-4, critic_lr=1e-4),
    "dmd2": dict(critic_steps=2, timesteps=[1000, 500], lr=1e-4, critic_lr=1e-4, plan=""),  # step-only
}


def _cfg(recipe: str, world: dict, out: Path, **kw):
    config_cls, _ = available_recipes()[recipe]
    base = dict(out=str(out), teacher=str(world["model"]), plan=str(world["plan"]), batch_size=2, steps=4,
                save_every=2, log_every=1, lr=1e-3, warmup_steps=0, ema_decay=0.5, cpu=True, threads=1,
                data={"_component_": "latents", "path": str(world["shards"])})
    return config_cls(**{**base, **RECIPE_KW[recipe], **kw})


def _run(recipe: str, cfg) -> Path:
    _, recipe_cls = available_recipes()[recipe]
    return train(recipe_cls(cfg), cfg, progress=False)


def _metrics(d):
    return [json.loads(ln) for ln in (Path(d) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe", sorted(RECIPE_KW))
def test_recipe_trains_a_non_shapes_wan_from_shards(recipe, shard_world, tmp_path):
    out = _run(recipe, _cfg(recipe, shard_world, tmp_path / "run"))
    m = _metrics(tmp_path / "run")
    assert [r["step"] for r in m] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for r in m for v in r.values() if isinstance(v, float))
    den = load_denoiser(out)  # a stock diffusers folder with the same latent channels
    assert den.model.config.in_channels == 4 and den.model.config.text_dim == 6
    ck = load_file(str(list_checkpoints(tmp_path / "run")[-1] / "model.safetensors"))
    start = load_denoiser(shard_world["model"]).state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in ck.items() if k in start and v.shape == start[k].shape)


def test_train_verb_takes_the_source_from_the_command_line(shard_world, tmp_path, capsys):
    from fastlight.cli import main

    w = shard_world
    args = ["train", "--recipe", "align", f"teacher={w['model']}", f"plan={w['plan']}", "steps=1", "batch_size=2",
            "cpu=true", "threads=1", "ema_decay=0"]
    assert main([*args, f"out={tmp_path / 'ok'}", f"data={{_component_: latents, path: {w['shards']}}}"]) == 0
    assert load_denoiser(tmp_path / "ok" / "model").model.config.in_channels == 4
    capsys.readouterr()
    assert main([*args, f"out={tmp_path / 'bad'}", f"data={{_component_: latents, path: {tmp_path / 'none'}}}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run `fastlight preprocess" in err[0], err
    assert not (tmp_path / "bad" / "model").exists()


def _script(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, __file__, *args], env=env, **kw)


def _world_args(w):
    return [str(w["model"]), str(w["plan"]), str(w["shards"])]


def test_dmd_from_shards_resumes_exactly_after_sigkill(shard_world, tmp_path):
    ref = tmp_path / "ref"
    _run("fastlightgen", _cfg("fastlightgen", shard_world, ref, steps=6))
    run = tmp_path / "run"
    p = _script(["single", str(run), *_world_args(shard_world), "--slow-after", "3"])
    ck = run / "checkpoints" / "step-00000002" / "state.json"
    deadline = time.time() + 120
    while not ck.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ck.exists(), "child never wrote the step-2 checkpoint"
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert max(int(d.name[5:]) for d in list_checkpoints(run)) < 6
    _run("fastlightgen", _cfg("fastlightgen", shard_world, run, steps=6))
    a, b = list_checkpoints(ref)[-1], list_checkpoints(run)[-1]
    for f in ("model.safetensors", "ema.safetensors", "critic.safetensors"):
        ta, tb = load_file(str(a / f)), load_file(str(b / f))
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f
    assert [r["step"] for r in _metrics(run)] == list(range(1, 7))
    assert _metrics(ref) == [{k: v for k, v in r.items()} for r in _metrics(run)]


LOSS_KEYS = ("loss", "loss_distill", "loss_flow", "task", "icd", "mca_gen", "mca_disc", "fm", "out", "layer", "dmd",
             "critic", "grad_norm", "beta1", "x0_mean")  # not x0_std: a std over each process's share


def test_every_recipe_from_shards_two_processes_match_one(shard_world, tmp_path):
    """accelerate launch, 2 gloo processes with half the batch each == one process: the sources and the
    recipes draw per sample (row of the global batch), so the split does not change the data."""
    one, two = tmp_path / "one", tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r1 = subprocess.run([sys.executable, __file__, "all", str(one), *_world_args(shard_world)], env=env,
                        capture_output=True, text=True, timeout=300)
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", __file__,
                         "all", str(two), *_world_args(shard_world)], env=env, capture_output=True, text=True,
                        timeout=400)
    assert r2.returncode == 0, r2.stderr[-3000:]
    for recipe in RECIPE_KW:
        m1, m2 = _metrics(one / recipe), _metrics(two / recipe)
        assert [m["step"] for m in m1] == [m["step"] for m in m2] == [1, 2, 3], recipe
        for a, b in zip(m1, m2):
            assert a.keys() == b.keys(), recipe
            for k in set(LOSS_KEYS) & set(a):
                assert abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])), (recipe, k, a, b)
        files = [f.name for f in list_checkpoints(one / recipe)[-1].glob("*.safetensors")]
        assert "model.safetensors" in files
        for f in files:
            ta, tb = (load_file(str(list_checkpoints(d / recipe)[-1] / f)) for d in (one, two))
            # the discriminator's conv bias before its GroupNorm has an analytically zero gradient: Adam
            # turns its float noise into steps of up to lr (1e-5) each, so allow 3 steps of it there
            atol = 3e-5 if f == "discriminator.safetensors" else 1e-5
            assert all(torch.allclose(ta[k], tb[k], atol=atol) for k in ta), (recipe, f)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("out")
    ap.add_argument("model")
    ap.add_argument("plan")
    ap.add_argument("shards")
    ap.add_argument("--slow-after", type=int, default=-1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    world = {"model": a.model, "plan": a.plan, "shards": a.shards}
    if a.mode == "all":  # every recipe, 3 steps each
        for name in RECIPE_KW:
            _run(name, _cfg(name, world, Path(a.out) / name, steps=3, save_every=3))
        sys.exit(0)
    cfg = _cfg("fastlightgen", world, Path(a.out), steps=6)
    _, recipe_cls = available_recipes()["fastlightgen"]
    recipe = recipe_cls(cfg)
    if a.slow_after >= 0:
        step = recipe.step

        def slow_step(batch, opt_step):
            if opt_step >= a.slow_after:
                time.sleep(0.5)
            return step(batch, opt_step)
        recipe.step = slow_step
    train(recipe, cfg, progress=False)
