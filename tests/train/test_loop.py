"""The training loop with a tiny linear-regression recipe (also runnable as a script for the
SIGKILL and the 2-process accelerate tests)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastlight.train import loop as loop_mod
from fastlight.train.checkpoint import list_checkpoints, prune_checkpoints
from fastlight.train.loop import LoopConfig, check_batch_divides, enable_gradient_checkpointing, global_batch_size, train

FULL_BATCH = 8


class LinearRecipe:
    """y = x @ w_true + noise; the batch of step k is a pure function of k (rank takes its slice)."""

    def __init__(self, nan_at: int = -1, slow_after: int = -1):
        self.nan_at, self.slow_after = nan_at, slow_after

    def trainable(self):
        return torch.nn.Linear(4, 1)

    def batch(self, step, rank, world_size):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(FULL_BATCH, 4, generator=g)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(FULL_BATCH, 1, generator=g)
        n = FULL_BATCH // world_size
        return step, x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]

    def step(self, batch, opt_step):
        step, x, y = batch
        if 0 <= self.slow_after <= step:
            time.sleep(0.3)
        loss = (self.model(x) - y).pow(2).mean()
        if step == self.nan_at:
            loss = loss * float("nan")
        return {"loss": loss, "abs_err": (self.model(x) - y).abs().mean()}

    def save_output(self, path, module):
        path.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), path / "final.pt")
        (path / "info.json").write_text(json.dumps(self.run_info))


class _Recipe(LinearRecipe):
    def trainable(self):
        self.model = super().trainable()
        return self.model


def _cfg(out, **kw):
    base = dict(out=str(out), steps=20, lr=0.05, warmup_steps=2, save_every=5, keep_last=2, log_every=1,
                ema_decay=0.9, cpu=True)
    return LoopConfig(**{**base, **kw})


def _final(out):
    return load_file(str(list_checkpoints(Path(out))[-1] / "model.safetensors"))


def _run_script(args, **popen_kw):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, __file__, *args], env=env, **popen_kw)


def test_sigkill_resume_matches_uninterrupted(tmp_path):
    ref = tmp_path / "ref"
    train(_Recipe(), _cfg(ref, grad_accum=2), progress=False)
    run = tmp_path / "run"
    p = _run_script(["single", str(run), "--grad-accum", "2", "--slow-after", "10"])
    ck = run / "checkpoints" / "step-00000005" / "state.json"
    deadline = time.time() + 60
    while not ck.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ck.exists(), "child never wrote the step-5 checkpoint"
    time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = [int(d.name[5:]) for d in list_checkpoints(run)]
    assert done and max(done) < 20, done
    train(_Recipe(), _cfg(run, grad_accum=2), progress=False)
    a, b = _final(ref), _final(run)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ea = load_file(str(list_checkpoints(ref)[-1] / "ema.safetensors"))
    eb = load_file(str(list_checkpoints(run)[-1] / "ema.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))
    assert (run / "model" / "final.pt").exists()


def test_progress_bar_shows_the_losses_computed():
    """A DMD-like critic-only step shows the critic's loss (no generator loss=0), a generator step both."""
    from fastlight.train.loop import progress_postfix

    assert progress_postfix({"critic": 0.25, "x0_std": 0.5}, ["critic"], {}) == {"critic": "0.25"}
    assert progress_postfix({"loss": 0.125, "critic": 0.25}, ["loss", "critic", "critic"], {"probe": 0.5}) == \
        {"loss": "0.125", "critic": "0.25", "probe": "0.5"}


def test_step_without_a_trained_loss_is_one_line(tmp_path):
    class NoLoss(_Recipe):
        def step(self, batch, opt_step):
            return {"abs_err": super().step(batch, opt_step)["abs_err"]}
    with pytest.raises(ValueError, match=r"returned \['abs_err'\]: none is the loss of a trained module \(loss\)"):
        train(NoLoss(), _cfg(tmp_path, steps=1), progress=False)


def test_keep_last_and_state(tmp_path):
    train(_Recipe(), _cfg(tmp_path, keep_last=2, ema_decay=0.0), progress=False)
    assert [d.name for d in list_checkpoints(tmp_path)] == ["step-00000015", "step-00000020"]
    ck = list_checkpoints(tmp_path)[-1]
    assert {f.name for f in ck.iterdir()} == {"model.safetensors", "optimizer.pt", "state.json"}
    state = json.loads((ck / "state.json").read_text())
    assert state["step"] == 20 and isinstance(state["rng"]["torch"], list)
    torch.load(ck / "optimizer.pt", weights_only=True)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_nonfinite_loss_names_step_and_saves_nothing(tmp_path):
    with pytest.raises(FloatingPointError, match=r"step 13 "):
        train(_Recipe(nan_at=12), _cfg(tmp_path), progress=False)
    assert [d.name for d in list_checkpoints(tmp_path)] == ["step-00000005", "step-00000010"]
    assert not (tmp_path / "model").exists()


def test_resume_with_different_config_refused(tmp_path):
    train(_Recipe(), _cfg(tmp_path, steps=5, lr_schedule="constant"), progress=False)
    train(_Recipe(), _cfg(tmp_path, steps=10, lr_schedule="constant"), progress=False)  # more steps: allowed
    with pytest.raises(ValueError, match=r"was made with a different config \(lr: 0.05 -> 0.01\); use a new --out") as e:
        train(_Recipe(), _cfg(tmp_path, steps=15, lr=0.01, lr_schedule="constant"), progress=False)
    assert "\n" not in str(e.value)


def test_resume_after_a_field_was_added_at_its_default(tmp_path):
    """A config field added since the checkpoint (absent from its saved config) resumes at its default and is
    refused at another value."""
    from dataclasses import asdict, dataclass

    @dataclass
    class Newer(LoopConfig):
        new_knob: float = 0.0

    train(_Recipe(), _cfg(tmp_path, steps=5, lr_schedule="constant"), progress=False)
    base = asdict(_cfg(tmp_path, steps=10, lr_schedule="constant"))
    with pytest.raises(ValueError, match=r"different config \(new_knob: None -> 1.0\)"):
        train(_Recipe(), Newer(**base, new_knob=1.0), progress=False)
    train(_Recipe(), Newer(**base), progress=False)  # resumed: 5 more steps
    assert json.loads((list_checkpoints(tmp_path)[-1] / "state.json").read_text())["step"] == 10


def test_two_processes_match_one(tmp_path):
    """accelerate launch, 2 processes on CPU (gloo), half the batch each == one process, full batch.

    `accelerate launch --cpu --num_processes 2` alone runs ONE plain process (its simple launcher,
    multi-CPU needs mpirun); `--multi_gpu` selects the torchrun launcher and the loop's
    Accelerator(cpu=True) then forms a 2-process gloo group on the CPU."""
    one, two = tmp_path / "one", tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r1 = subprocess.run([sys.executable, __file__, "single", str(one)], env=env, capture_output=True, text=True,
                        timeout=120)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                         __file__, "single", str(two)], env=env, capture_output=True, text=True, timeout=180)
    assert r2.returncode == 0, r2.stderr[-3000:]
    read = lambda d: [json.loads(ln) for ln in (d / "metrics.jsonl").read_text().splitlines()]
    m1, m2 = read(one), read(two)
    assert [m["step"] for m in m1] == [m["step"] for m in m2] == list(range(1, 21))
    for a, b in zip(m1, m2):
        assert abs(a["loss"] - b["loss"]) <= 1e-4 * max(1.0, abs(a["loss"])), (a, b)
    for k, v in _final(one).items():
        assert torch.allclose(v, _final(two)[k], atol=1e-5), k
    assert json.loads((two / "model" / "info.json").read_text())["num_processes"] == 2
    # only rank 0 wrote: one checkpoint set, one metrics line per step, no stray temp folders
    assert [d.name for d in list_checkpoints(two)] == ["step-00000015", "step-00000020"]
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-00000015", "step-00000020"]


def test_batch_size_must_divide_across_processes():
    with pytest.raises(ValueError) as e:
        check_batch_divides(15, 2)
    assert str(e.value) == "batch_size 15 does not divide across 2 processes; use a multiple of 2"
    for ok in [(16, 2), (15, 1), (None, 2), (12, 3)]:
        check_batch_divides(*ok)

    class WithCfg:
        cfg = type("C", (), {"batch_size": 6})()
    assert global_batch_size(WithCfg(), LoopConfig()) == 6
    assert global_batch_size(_Recipe(), LoopConfig()) is None  # no batch_size anywhere: nothing to check


def test_tensorboard_missing_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    assert loop_mod._tb_writer(tmp_path) is None
    train(_Recipe(), _cfg(tmp_path, steps=3, save_every=3), progress=False)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    assert not (tmp_path / "tb").exists()


def test_tensorboard_gets_the_logged_scalars(tmp_path, monkeypatch):
    calls, closed = [], []

    class FakeWriter:
        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            closed.append(True)

    monkeypatch.setattr(loop_mod, "_tb_writer", lambda out: FakeWriter())
    train(_Recipe(), _cfg(tmp_path, steps=2, save_every=2), progress=False)
    assert {t for t, _ in calls} == {"lr", "loss", "abs_err", "grad_norm"}
    assert sorted({s for _, s in calls}) == [1, 2] and closed == [True]


def test_gradient_checkpointing_same_grads():
    from fastlight.models.denoiser import Cond
    from fastlight.models.wan import WanDenoiser, tiny_wan_config

    torch.manual_seed(0)
    den = WanDenoiser.from_config(**tiny_wan_config(num_layers=2))
    x, s, cond = torch.randn(1, 4, 1, 4, 4), torch.tensor([0.5]), Cond(text=torch.randn(1, 3, 16))

    def grads():
        den.zero_grad(set_to_none=True)
        den(x, s, cond).pow(2).mean().backward()
        return {k: p.grad.clone() for k, p in den.named_parameters() if p.grad is not None}

    ref = grads()
    assert not den.model.gradient_checkpointing
    assert enable_gradient_checkpointing(den) >= 1 and den.model.gradient_checkpointing
    got = grads()
    assert ref.keys() == got.keys() and all(torch.allclose(ref[k], got[k], atol=1e-6) for k in ref)
    assert enable_gradient_checkpointing(torch.nn.Linear(2, 2)) == 0  # nothing to switch on


def test_gradient_checkpointing_not_hashed(tmp_path):
    """Turning checkpointing on for a resume keeps the run (it changes memory, not the result)."""
    train(_Recipe(), _cfg(tmp_path, steps=2, save_every=2), progress=False)
    train(_Recipe(), _cfg(tmp_path, steps=4, save_every=2, gradient_checkpointing=True), progress=False)
    assert [d.name for d in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]


@pytest.mark.parametrize("name", ["cpu_2proc", "single_gpu_bf16", "ddp_bf16", "fsdp_bf16", "fsdp_cpu_2proc",
                                  "deepspeed_zero3_bf16"])
def test_accelerate_configs_parse(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    path = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / f"{name}.yaml"
    assert path.read_text().startswith("# accelerate launch --config_file configs/accelerate/")
    c = load_config_from_file(str(path))
    assert isinstance(c, ClusterConfig)
    want = {"cpu_2proc": ("MULTI_GPU", "no"), "single_gpu_bf16": ("NO", "bf16"), "ddp_bf16": ("MULTI_GPU", "bf16"),
            "fsdp_bf16": ("FSDP", "bf16"), "fsdp_cpu_2proc": ("FSDP", "no"),
            "deepspeed_zero3_bf16": ("DEEPSPEED", "bf16")}[name]
    assert (c.distributed_type.value, c.mixed_precision) == want
    if name in ("cpu_2proc", "fsdp_cpu_2proc"):
        assert c.num_processes == 2 and not c.use_cpu
    if name.startswith("fsdp"):  # the loop shards with FSDP2 itself: blocks for TRANSFORMER_BASED_WRAP
        assert c.fsdp_config["fsdp_version"] == 2 and c.fsdp_config["fsdp_reshard_after_forward"] is True
        assert c.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if name == "deepspeed_zero3_bf16":
        assert c.deepspeed_config["zero_stage"] == 3


def test_ema_update_is_the_lerp_formula_it_replaces():
    """torch's EMA update (get_ema_multi_avg_fn) gives exactly the per-parameter lerp the loop used,
    i.e. decay * ema + (1 - decay) * model, with the warm-up decay min(ema_decay, (1 + s) / (10 + s))."""
    from fastlight.train.loop import ema_decay_at, ema_update

    torch.manual_seed(0)
    model, ema = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    ref = [p.detach().clone() for p in ema.parameters()]
    cfg = LoopConfig(ema_decay=0.9)
    assert [ema_decay_at(cfg, s) for s in (0, 1, 80, 1000)] == [0.1, 2 / 11, 0.9, 0.9]
    for s in range(12):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        decay = ema_decay_at(cfg, s)
        ema_update(ema, model, decay)
        for r, pm in zip(ref, model.parameters()):
            r.lerp_(pm.detach(), 1 - decay)  # the replaced update
        for pe, r in zip(ema.parameters(), ref):
            assert torch.equal(pe, r)
    before = [p.detach().clone() for p in ema.parameters()]
    ema_update(ema, model, 0.75)
    for pe, p0, pm in zip(ema.parameters(), before, model.parameters()):
        assert torch.allclose(pe, 0.75 * p0 + 0.25 * pm, atol=1e-6)


def test_lr_at_is_warmup_then_cosine_or_constant():
    """lr_at (the pure schedule, kept over a torch LRScheduler: module doc) against its formula."""
    import math

    from fastlight.train.loop import lr_at

    cfg = LoopConfig(lr=1.0, steps=12, warmup_steps=2, min_lr_ratio=0.1)
    assert [lr_at(cfg, s) for s in (0, 1)] == [0.5, 1.0]
    for s in range(2, 14):
        t = min(1.0, (s - 2) / 10)
        assert math.isclose(lr_at(cfg, s), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
    const = LoopConfig(lr=1.0, steps=12, warmup_steps=2, lr_schedule="constant")
    assert [lr_at(const, s) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


def test_resume_with_other_steps_under_cosine_refused(tmp_path):
    from fastlight.errors import ConfigError

    train(_Recipe(), _cfg(tmp_path, steps=6, save_every=3, warmup_steps=1), progress=False)
    with pytest.raises(ConfigError, match=r"made with steps=6 and a cosine lr_schedule.*resume with steps=6"):
        train(_Recipe(), _cfg(tmp_path, steps=9, save_every=3, warmup_steps=1), progress=False)


def test_resume_with_other_steps_exact_when_lr_does_not_depend_on_them(tmp_path):
    """Constant schedule (any resume step) or cosine resumed within the warm-up: more steps on resume
    give exactly the run made with the new steps from the start."""
    for name, kw, first in (("const", dict(lr_schedule="constant"), 4), ("warm", dict(warmup_steps=5), 4)):
        ref, run = tmp_path / f"{name}-ref", tmp_path / f"{name}-run"
        train(_Recipe(), _cfg(ref, steps=8, save_every=4, **kw), progress=False)
        train(_Recipe(), _cfg(run, steps=first, save_every=4, **kw), progress=False)
        train(_Recipe(), _cfg(run, steps=8, save_every=4, **kw), progress=False)
        a, b = _final(ref), _final(run)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_checkpoint_written_atomically_and_partials_ignored(tmp_path):
    """state.json is strict JSON; a hidden partial folder (a killed save) never counts and is pruned."""
    train(_Recipe(), _cfg(tmp_path, steps=4, save_every=2), progress=False)
    partial = tmp_path / "checkpoints" / ".step-00000006.999.tmp"
    partial.mkdir()
    (partial / "state.json").write_text("{}")
    assert [d.name for d in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]
    state = json.loads((list_checkpoints(tmp_path)[-1] / "state.json").read_text())
    assert state["step"] == 4 and state["steps"] == 4
    prune_checkpoints(tmp_path, keep_last=1)
    assert not partial.exists()
    assert [d.name for d in list_checkpoints(tmp_path)] == ["step-00000004"]


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("out")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--slow-after", type=int, default=-1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    train(_Recipe(slow_after=a.slow_after), _cfg(a.out, grad_accum=a.grad_accum), progress=False)
