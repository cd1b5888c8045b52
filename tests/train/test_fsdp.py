"""FSDP2 parameter sharding in the training loop (shard=blocks|root), 2 processes on the CPU (gloo).

The file is also the script that `accelerate launch --config_file configs/accelerate/fsdp_cpu_2proc.yaml`
runs: in one launch it trains several runs one after another (see `_launched`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastlight.train.checkpoint import list_checkpoints
from fastlight.train.loop import LoopConfig, check_loop_config, train
from fastlight.train.sharding import full_module, meta_skeleton, resolve_shard, shard_units

ROOT = Path(__file__).resolve().parents[2]
FULL_BATCH = 8


class Blocky(torch.nn.Module):
    """in -> 4 residual blocks (any may be skipped) -> out; 1185 parameters."""

    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(4, 16)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(4))
        self.out = torch.nn.Linear(16, 1)

    def forward(self, x, skip=()):
        h = self.inp(x)
        for i, b in enumerate(self.blocks):
            if i not in skip:
                h = h + torch.tanh(b(h))
        return self.out(h)


class BlockyRecipe:
    """Like dpp: an unpruned forward under no_grad, then pruned forward(s) with a random skip set.
    per_rank=False: the skip set depends on the step only (the same on every process);
    per_rank=True: on (step, rank), and a process may run one or two pruned forwards."""

    def __init__(self, per_rank: bool = False):
        self.per_rank = per_rank

    def trainable(self):
        self.model = Blocky()
        return self.model

    def batch(self, step, rank, world_size):
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(FULL_BATCH, 4, generator=g)
        y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])).sin() + 0.1 * torch.randn(FULL_BATCH, 1, generator=g)
        n = FULL_BATCH // world_size
        gs = torch.Generator().manual_seed(7 * step + (100_003 * (rank + 1) if self.per_rank else 0))
        u = torch.rand(2, 4, generator=gs)
        skips = [frozenset(i for i in range(4) if u[0, i] < 0.5)]
        if self.per_rank and u[1, 0] < 0.5:
            skips.append(frozenset(i for i in range(4) if u[1, i] < 0.5))
        return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n], skips

    def step(self, batch, step):
        x, y, skips = batch
        with torch.no_grad():
            full = self.model(x)
        loss = 0
        for sk in skips:
            v = self.model(x, skip=sk)
            loss = loss + (v - y).pow(2).mean() + 0.5 * (v - full).pow(2).mean()
        return {"loss": loss / len(skips), "skipped": torch.tensor(float(len(skips[0])))}

    def save_output(self, path, module):
        path.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), path / "final.pt")
        from torch.distributed.tensor import DTensor
        info = {**self.run_info, "type": type(module).__name__,
                "dtensors": any(isinstance(p, DTensor) for p in module.parameters())}
        (path / "info.json").write_text(json.dumps(info))


def _cfg(out, **kw):
    base = dict(out=str(out), steps=20, lr=0.05, lr_schedule="constant", warmup_steps=2, save_every=4, keep_last=2,
                log_every=1, ema_decay=0.9, grad_accum=2, cpu=True)
    return LoopConfig(**{**base, **kw})


def _metrics(d):
    return [json.loads(ln) for ln in (Path(d) / "metrics.jsonl").read_text().splitlines()]


def _launched(out: Path) -> None:
    """Runs inside each of the 2 launched processes."""
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    # (a)-(d): blocks sharding (auto, from the FSDP launch config) to step 8; resumed unsharded to
    # step 14 (a sharded checkpoint into a plain run); resumed sharded to step 20 (and back)
    rec = BlockyRecipe()
    train(rec, _cfg(out / "blocks", steps=8), progress=False)
    from torch.distributed.tensor import DTensor
    ps = list(rec.model.parameters())
    (out / f"numel-{rank}.json").write_text(json.dumps({
        "local": sum(p.to_local().numel() for p in ps), "full": sum(p.numel() for p in ps),
        "all_dtensor": all(isinstance(p, DTensor) for p in ps)}))
    train(BlockyRecipe(), _cfg(out / "blocks", steps=14, shard="none"), progress=False)
    train(BlockyRecipe(), _cfg(out / "blocks", steps=20), progress=False)
    # CPU offload under FSDP2 (on the CPU host == device: this checks the maths and the policy taking
    # effect, not host<->device copies): params (root), optimizer (blocks, resumed at step 4 without
    # offload: FSDP's AdamW reads the sharded HostAdamW's checkpoint), both (blocks, resumed at step 4
    # with offload=optimizer: HostAdamW reads the checkpoint of FSDP's offloaded AdamW)
    offload = {}
    for name, shard, legs in [("off-params", "root", ["params"]), ("off-opt", "blocks", ["optimizer", "none"]),
                              ("off-both", "blocks", ["both", "optimizer"])]:
        for i, off in enumerate(legs):
            rec = BlockyRecipe()
            train(rec, _cfg(out / name, steps=4 * (i + 1) if len(legs) > 1 else 8, shard=shard, offload=off),
                  progress=False)
            offload[f"{name}-{off}"] = _offload_facts(rec.model)
    (out / f"offload-{rank}.json").write_text(json.dumps(offload))
    # processes running different forwards: root sharding == no sharding
    for shard in ("root", "none"):
        train(BlockyRecipe(per_rank=True), _cfg(out / shard, steps=8, shard=shard), progress=False)
    # ... which block sharding refuses (on every process, no hang)
    try:
        train(BlockyRecipe(per_rank=True), _cfg(out / "bad", steps=8, shard="blocks"), progress=False)
        msg = "no error"
    except RuntimeError as e:
        msg = str(e)
    (out / f"bad-{rank}.txt").write_text(msg)
    # the real dpp recipe on a tiny Shapes Wan: per-process skip sets under root, the same skip
    # (p=1) under blocks with gradient checkpointing; each against no sharding
    from fastlight.train.recipes import DppConfig, DppRecipe
    for name, p, shard, gc in [("dpp-root", 0.5, "root", False), ("dpp-none", 0.5, "none", False),
                               ("dpp-blocks", 1.0, "blocks", True), ("dpp-none1", 1.0, "none", False)]:
        cfg = DppConfig(out=str(out / name), teacher=str(out / "teacher"), plan=str(out / "plan.json"), batch_size=4,
                        steps=3, save_every=3, log_every=1, lr=1e-3, warmup_steps=0, ema_decay=0.5, cpu=True,
                        threads=1, p=p, alpha=0.5, shard=shard, gradient_checkpointing=gc)
        train(DppRecipe(cfg), cfg, progress=False)
    # dmd: G, its critic and the frozen real score, each sharded (blocks, and root: gathered once per
    # micro-batch); critic-only steps update the critic alone
    from fastlight.distill.dmd import DmdConfig, DmdRecipe
    from fastlight.train.icmd import IcmdConfig, IcmdRecipe
    from fastlight.train.sharding import local_numel
    numel = {}
    for shard in ("blocks", "root", "none"):
        cfg = DmdConfig(out=str(out / f"dmd-{shard}"), teacher=str(out / "teacher"), plan=str(out / "plan.json"),
                        batch_size=2, steps=3, save_every=3, log_every=1, lr=1e-3, critic_lr=1e-3, critic_steps=2,
                        ema_decay=0.0, cpu=True, threads=1, shard=shard)
        rec = DmdRecipe(cfg)
        train(rec, cfg, progress=False)
        if shard == "blocks":
            numel["critic"] = [local_numel(rec.critic), sum(p.numel() for p in rec.critic.parameters())]
            # the frozen real score too: sharded, no optimizer state, not in the checkpoint
            numel["real_score"] = [local_numel(rec.real), sum(p.numel() for p in rec.real.parameters())]
            numel["real_score_dtensors"] = all(isinstance(p, DTensor) for p in rec.real.parameters())
    # icmd: the student and its discriminator, each sharded (MCA from the first step)
    for shard in ("blocks", "none"):
        cfg = IcmdConfig(out=str(out / f"icmd-{shard}"), teacher=str(out / "teacher"), plan=str(out / "plan.json"),
                         batch_size=2, steps=3, save_every=3, log_every=1, lr=1e-3, disc_lr=1e-3, mca_warmup_steps=0,
                         disc_channels=8, ema_decay=0.0, cpu=True, threads=1, shard=shard)
        rec = IcmdRecipe(cfg)
        train(rec, cfg, progress=False)
        if shard == "blocks":
            numel["discriminator"] = [local_numel(rec.disc), sum(p.numel() for p in rec.disc.parameters())]
    (out / f"parts-{rank}.json").write_text(json.dumps(numel))


def _offload_facts(model) -> dict:
    """Where a trained FSDP2 model's shards are and whether FSDP offloads them (its own flag)."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    flags = [fp.offload_to_cpu for m in model.modules() if isinstance(m, FSDPModule)
             for fp in (m._get_fsdp_state()._fsdp_param_group.fsdp_params if m._get_fsdp_state()._fsdp_param_group
                        else [])]
    ps = list(model.parameters())
    return {"devices": sorted({p.to_local().device.type for p in ps}), "dtensor": all(isinstance(p, DTensor) for p in ps),
            "offload_flags": sorted(set(flags)), "n_flags": len(flags), "n_params": len(ps)}


def test_fsdp_two_processes(tmp_path, shapes_model_factory):
    from fastlight.analyze.plans import depth_plan, write_plan
    from fastlight.models.load import load_denoiser

    teacher = load_denoiser(shapes_model_factory(tmp_path / "teacher", num_layers=2, perturb=0.05))
    plan = depth_plan([{"index": 0, "score": 1.0}, {"index": 1, "score": 0.1}], teacher, 0.05, keep_ends=False,
                      verbose=False)
    assert plan["drop_blocks"] == [1]
    write_plan(tmp_path / "plan.json", plan)
    one = tmp_path / "one"
    train(BlockyRecipe(), _cfg(one), progress=False)  # 1 process, full batch, unsharded

    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                        str(ROOT / "configs" / "accelerate" / "fsdp_cpu_2proc.yaml"), __file__, str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "FSDP2 shard=blocks over 2 processes" in r.stdout
    assert r.stdout.count("resuming") == 4  # blocks twice, off-opt and off-both once

    # (a) sharding is real: each process holds about half of the parameters
    for rank in (0, 1):
        n = json.loads((tmp_path / f"numel-{rank}.json").read_text())
        assert n["full"] == 1185 and n["all_dtensor"], n
        assert 0.4 * n["full"] <= n["local"] <= 0.55 * n["full"], n

    # (b) + (d): the loss curve (three legs: 8 sharded, 14 unsharded, 20 sharded) matches one process
    # with the full batch
    two = tmp_path / "blocks"
    m1, m2 = _metrics(one), _metrics(two)
    assert [m["step"] for m in m1] == [m["step"] for m in m2] == list(range(1, 21))
    for a, b in zip(m1, m2):
        for k in ("loss", "grad_norm"):
            assert abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])), (k, a, b)

    # (c) only rank 0 wrote; the checkpoint holds full tensors, loadable into an unsharded model
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-00000016", "step-00000020"]
    ck1, ck2 = list_checkpoints(one)[-1], list_checkpoints(two)[-1]
    for f in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(ck1 / f)), load_file(str(ck2 / f))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a), f
    Blocky().load_state_dict(load_file(str(ck2 / "model.safetensors")))  # strict: every key, full shapes
    o1, o2 = (torch.load(c / "optimizer.pt", weights_only=True) for c in (ck1, ck2))
    assert o1["param_groups"] == o2["param_groups"] and o1["state"].keys() == o2["state"].keys()
    for i, st in o1["state"].items():
        assert all(torch.allclose(v, o2["state"][i][k], atol=1e-5) for k, v in st.items()), i
    info = json.loads((two / "model" / "info.json").read_text())
    assert info["num_processes"] == 2 and info["shard"] == "blocks"
    assert info["type"] == "Blocky" and not info["dtensors"]  # save_output got a plain full module
    final = torch.load(two / "model" / "final.pt", weights_only=True)
    assert all(torch.allclose(final[k], v, atol=1e-5) for k, v in load_file(str(ck1 / "ema.safetensors")).items())

    # CPU offload: every run's loss and grad norm match one process without offload; FSDP's own flag
    # says offloaded exactly under params/both, for every parameter
    for name in ("off-params", "off-opt", "off-both"):
        mo = _metrics(tmp_path / name)
        assert [m["step"] for m in mo] == list(range(1, 9)), name
        for a, b in zip(m1, mo):
            for k in ("loss", "grad_norm"):
                assert abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])), (name, k, a, b)
    for rank in (0, 1):
        facts = json.loads((tmp_path / f"offload-{rank}.json").read_text())
        assert sorted(facts) == ["off-both-both", "off-both-optimizer", "off-opt-none", "off-opt-optimizer",
                                "off-params-params"]
        for key, f in facts.items():
            assert f["dtensor"] and f["devices"] == ["cpu"] and f["n_flags"] == f["n_params"] == 12, (key, f)
            assert f["offload_flags"] == [key.endswith(("params", "both"))], (key, f)
    assert json.loads((tmp_path / "off-params" / "model" / "info.json").read_text())["offload"] == "params"

    # processes running different forwards (per-process skip sets, 1 or 2 forwards): root == none
    mr, mn = _metrics(tmp_path / "root"), _metrics(tmp_path / "none")
    assert len(mr) == len(mn) == 8
    assert all(abs(a["loss"] - b["loss"]) <= 1e-4 * max(1.0, abs(a["loss"])) for a, b in zip(mr, mn)), (mr, mn)
    ar, an = _final_ckpt(tmp_path / "root"), _final_ckpt(tmp_path / "none")
    assert all(torch.allclose(ar[k], an[k], atol=1e-5) for k in an)
    # and blocks refuses them on both processes with one line that names the fix
    for rank in (0, 1):
        msg = (tmp_path / f"bad-{rank}.txt").read_text()
        assert "shard=root" in msg and "\n" not in msg, msg

    # the critic, the discriminator and the frozen real score are sharded like the generator: about
    # half on each process, every real-score parameter a DTensor
    for rank in (0, 1):
        parts = json.loads((tmp_path / f"parts-{rank}.json").read_text())
        assert parts.pop("real_score_dtensors") is True, rank
        assert sorted(parts) == ["critic", "discriminator", "real_score"]
        for part, (local, full) in parts.items():
            assert 0.35 * full <= local <= 0.65 * full, (rank, part, local, full)
    # ... and the real score is an input, not trained state: no optimizer, nothing checkpointed
    ck = list_checkpoints(tmp_path / "dmd-blocks")[-1]
    assert not any("real" in f.name for f in ck.iterdir()), sorted(f.name for f in ck.iterdir())

    # dpp: root (per-process skip sets) == none; blocks + gradient checkpointing == none; dmd: blocks and
    # root == none; icmd: blocks == none
    for a, b in [("dpp-root", "dpp-none"), ("dpp-blocks", "dpp-none1"), ("dmd-blocks", "dmd-none"),
                 ("dmd-root", "dmd-none"), ("icmd-blocks", "icmd-none")]:
        ma, mb = _metrics(tmp_path / a), _metrics(tmp_path / b)
        assert len(ma) == len(mb) == 3
        for x, y in zip(ma, mb):
            assert x.keys() == y.keys(), (a, x, y)
            for k in x:
                assert abs(x[k] - y[k]) <= 1e-4 * max(1.0, abs(x[k])), (a, k, x, y)
        fa, fb = _final_ckpt(tmp_path / a), _final_ckpt(tmp_path / b)
        assert all(torch.allclose(fa[k], fb[k], atol=1e-5) for k in fb), a
        other = {"dmd-blocks": "critic.safetensors", "dmd-root": "critic.safetensors",
                 "icmd-blocks": "discriminator.safetensors"}.get(a)
        if other:  # the second module's full tensors, gathered into the checkpoint, match too
            ca, cb = (load_file(str(list_checkpoints(tmp_path / d)[-1] / other)) for d in (a, b))
            assert all(torch.allclose(ca[k], cb[k], atol=1e-5) for k in cb), (a, other)
        den = load_denoiser(tmp_path / a / "model")  # save_output wrote a stock folder from the full module
        ck = list_checkpoints(tmp_path / a)[-1]
        ema = load_file(str(ck / ("ema.safetensors" if (ck / "ema.safetensors").exists() else "model.safetensors")))
        assert den.state_dict().keys() == ema.keys()
        assert all(torch.allclose(v, ema[k]) for k, v in den.state_dict().items())
    assert json.loads((tmp_path / "dpp-root" / "model" / "manifest.json").read_text())["shard"] == "root"


def _final_ckpt(d):
    return load_file(str(list_checkpoints(d)[-1] / "model.safetensors"))


def test_resolve_shard():
    cfg = LoopConfig()
    assert resolve_shard(cfg, "MULTI_GPU", 2) == "none"
    assert resolve_shard(cfg, "FSDP", 2, env={"FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP"}) == "blocks"
    assert resolve_shard(cfg, "FSDP", 2, env={}) == "blocks"
    assert resolve_shard(cfg, "FSDP", 2, env={"FSDP_AUTO_WRAP_POLICY": "NO_WRAP"}) == "root"
    assert resolve_shard(cfg, "FSDP", 1, env={}) == "none"  # one process: nothing to shard over
    assert resolve_shard(LoopConfig(shard="root"), "MULTI_GPU", 2) == "root"
    assert resolve_shard(LoopConfig(shard="none"), "FSDP", 2, env={}) == "none"
    with pytest.raises(ValueError) as e:
        resolve_shard(cfg, "DEEPSPEED", 2)
    assert "fsdp_bf16.yaml" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="shard must be one of auto, none, blocks, root"):
        check_loop_config(LoopConfig(shard="zero3"))


def test_shard_units_are_the_transformer_blocks():
    from fastlight.models.wan import WanDenoiser, tiny_wan_config

    den = WanDenoiser.from_config(**tiny_wan_config(num_layers=3))
    assert shard_units(den) == list(den.model.blocks)
    b = Blocky()
    assert shard_units(b) == list(b.blocks)
    assert shard_units(torch.nn.Linear(2, 2)) == []


def test_meta_skeleton_refilled_from_a_full_state_dict():
    from fastlight.models.wan import WanDenoiser, tiny_wan_config

    torch.manual_seed(0)
    den = WanDenoiser.from_config(**tiny_wan_config(num_layers=2))
    sk = meta_skeleton(den)
    assert all(p.is_meta for p in sk.parameters()) and not any(p.is_meta for p in den.parameters())
    m = full_module(sk, {k: v.clone() for k, v in den.state_dict().items()})
    assert type(m) is WanDenoiser and not any(p.is_meta for p in m.parameters())
    assert all(torch.equal(a, b) for a, b in zip(den.state_dict().values(), m.state_dict().values()))
    assert all(p.is_meta for p in sk.parameters())  # the skeleton stays empty for the next use


if __name__ == "__main__":
    _launched(Path(sys.argv[1]))
