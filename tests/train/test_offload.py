"""CPU offload in the training loop (`offload`: none | params | optimizer | both), one process.

Only a CPU is available here: host and device are the same, so these tests check the maths (an
offloaded run trains exactly like a plain one), the refusals, where the optimizer's tensors are kept
(HostAdamW's own host copies, not the parameters), and that FSDP2's CPUOffloadPolicy reaches every
fully_shard call (a spy). The 2-process FSDP runs with offload are in tests/train/test_fsdp.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastlight.errors import ConfigError
from fastlight.train.checkpoint import config_hash, list_checkpoints
from fastlight.train.loop import LoopConfig, check_loop_config, train
from fastlight.train.sharding import HostAdamW, apply_fsdp, check_offload

from tests.train.test_fsdp import Blocky, BlockyRecipe, _cfg


def _metrics(d):
    return [json.loads(ln) for ln in (Path(d) / "metrics.jsonl").read_text().splitlines()]


def test_offload_is_checked_and_not_hashed(tmp_path):
    with pytest.raises(ConfigError, match="offload must be one of none, params, optimizer, both"):
        check_loop_config(LoopConfig(offload="cpu"))
    assert config_hash(LoopConfig(out=str(tmp_path))) == config_hash(LoopConfig(out=str(tmp_path), offload="both"))


@pytest.mark.parametrize("offload", ["params", "both"])
def test_param_offload_without_sharding_is_refused_in_one_line(tmp_path, offload):
    with pytest.raises(ConfigError) as e:
        train(BlockyRecipe(), _cfg(tmp_path / "run", steps=2, offload=offload), progress=False)
    msg = str(e.value)
    assert "shard=blocks" in msg and "offload=optimizer" in msg and "\n" not in msg, msg
    assert not (tmp_path / "run" / "checkpoints").exists()
    check_offload("optimizer", "none")  # allowed unsharded
    check_offload(offload, "blocks")


def test_optimizer_offload_one_process_matches_and_resumes(tmp_path):
    """offload=optimizer unsharded: the same losses, grad norms, weights, EMA and optimizer state as a
    plain run; resumed half-way from its own checkpoint (and into a plain run) it continues exactly."""
    torch.set_num_threads(1)
    plain, off = tmp_path / "plain", tmp_path / "off"
    train(BlockyRecipe(), _cfg(plain, steps=12), progress=False)
    rec = BlockyRecipe()
    train(rec, _cfg(off, steps=6, offload="optimizer"), progress=False)
    train(BlockyRecipe(), _cfg(off, steps=9), progress=False)  # a plain leg reads HostAdamW's checkpoint
    train(BlockyRecipe(), _cfg(off, steps=12, offload="optimizer"), progress=False)  # ... and back
    m1, m2 = _metrics(plain), _metrics(off)
    assert [m["step"] for m in m2] == list(range(1, 13))
    for a, b in zip(m1, m2, strict=True):
        for k in ("loss", "grad_norm"):
            assert abs(a[k] - b[k]) <= 1e-6 * max(1.0, abs(a[k])), (k, a, b)
    c1, c2 = list_checkpoints(plain)[-1], list_checkpoints(off)[-1]
    for f in ("model.safetensors", "ema.safetensors"):
        a, b = load_file(str(c1 / f)), load_file(str(c2 / f))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), f
    o1, o2 = (torch.load(c / "optimizer.pt", weights_only=True) for c in (c1, c2))
    assert o1["param_groups"] == o2["param_groups"] and o1["state"].keys() == o2["state"].keys()
    for i, st in o1["state"].items():
        assert all(torch.allclose(v, o2["state"][i][k], atol=1e-6) for k, v in st.items()), i


def test_host_adamw_keeps_its_own_host_tensors():
    """HostAdamW's master copies and state are host (CPU) tensors of their own, not the parameters,
    and a step writes the update back into the parameters (equal to torch's AdamW's)."""
    torch.manual_seed(0)
    a, b = Blocky(), Blocky()
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.AdamW(a.parameters(), lr=0.1, weight_decay=0.01)
    opt_b = HostAdamW(b.parameters(), lr=0.1, weight_decay=0.01)
    x = torch.randn(5, 4)
    for _ in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            m(x, skip={1}).pow(2).mean().backward()
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    tensors = opt_b.tensors()
    n = len(list(b.parameters()))
    # a master copy per parameter; step, exp_avg, exp_avg_sq for each one that had a gradient (block 1
    # was skipped: its weight and bias have none, as in torch's AdamW)
    assert len(tensors) == n + 3 * (n - 2) and len(opt_b.inner.state) == len(opt_a.state) == n - 2
    assert all(t.device.type == "cpu" for t in tensors)
    ptrs = {p.data_ptr() for p in b.parameters()}
    assert not any(t.data_ptr() in ptrs for t in tensors)  # copies, not the parameters themselves
    assert all(p.grad is None for p in opt_b.host)  # host gradients freed after the step


def test_cpu_offload_policy_reaches_every_fully_shard(monkeypatch):
    """A spy on fully_shard: offload=True passes CPUOffloadPolicy (unpinned on a CPU mesh, pinned on
    a CUDA one) to every block and the root; offload=False passes the default no-offload policy."""
    import torch.distributed.fsdp as fsdp
    from torch.distributed.fsdp import CPUOffloadPolicy

    calls = []
    monkeypatch.setattr(fsdp, "fully_shard", lambda module, **kw: calls.append((module, kw)))

    class Mesh:
        def __init__(self, device_type):
            self.device_type = device_type

    for device_type, pinned in (("cpu", False), ("cuda", True)):
        calls.clear()
        m = Blocky()
        apply_fsdp(m, "blocks", Mesh(device_type), offload=True)
        assert [c[0] for c in calls] == [*m.blocks, m]
        for _, kw in calls:
            assert isinstance(kw["offload_policy"], CPUOffloadPolicy) and kw["offload_policy"].pin_memory is pinned
        assert all(p.device.type == "cpu" for p in m.parameters())  # materialised on the host first
    calls.clear()
    apply_fsdp(Blocky(), "root", Mesh("cpu"), offload=False)
    assert len(calls) == 1 and not isinstance(calls[0][1]["offload_policy"], CPUOffloadPolicy)
    assert calls[0][1]["reshard_after_forward"] is False
