"""FSDP2 parameter sharding for the training loop (`shard`: none | blocks | root | auto).

  none   a full replica per process; the loop averages gradients itself (one all-reduce per
         parameter per optimizer step).
  blocks PyTorch FSDP2 (`fully_shard`, in place: the hooks sit on the module itself, so a recipe's
         own calls all-gather): one unit per transformer block (the children of every ModuleList
         named `*blocks`, e.g. Wan's `model.blocks`) plus the root. Every process must run the same
         forwards with the same `skip=` (`SameForwardsCheck`: a mismatch stops the run with one line
         instead of pairing the wrong collectives).
  root   FSDP2 with one unit for the whole module, never resharded between forwards: parameters are
         gathered once per micro-batch, so processes may run different forwards (dpp with
         per_sample=true groups its samples by skip set). Sharded at rest, full while a micro-batch runs.
  auto   blocks when launched with accelerate's FSDP type (root when its fsdp_auto_wrap_policy is
         NO_WRAP), none otherwise. One process: none.

Every module a recipe optimises (generator, critic, discriminator) and every frozen one it runs
(`recipe.frozen()`: Stage III's real score) is sharded the same way; a module without blocks (ICMD's
discriminator) is one unit. Besides `forward`, the methods in FORWARD_METHODS that a module has
(`Denoiser.forward_shared`: the well-guided teacher's shared-prefix evaluation) gather and free
the root's parameters like a forward (`register_fsdp_forward_method`). DeepSpeed is refused
(ZeRO-3 needs accelerator.prepare, which the loop does not use).

CPU offload (`offload`: none | params | optimizer | both):
  params     FSDP2's CPUOffloadPolicy on every `fully_shard` (trained, frozen, EMA): the parameter
             shards and their gradient shards live on the host, each unit is copied to the device
             and all-gathered for its forward/backward, and torch's AdamW then steps on the host
             shards (its state is created there). Needs shard=blocks|root.
  optimizer  parameters stay on the device; `HostAdamW` keeps an fp32 host copy of each parameter
             (of this process's shard under FSDP) and AdamW's state beside it, steps there, and
             copies the result back (ZeRO-Offload's split). The EMA lives on the host too.
  both       params: with parameters on the host, torch's AdamW already steps there.
Only the CPU is available where this was written: on a CPU mesh (gloo) "host" and "device" are the
same, so the tests check that training is unchanged, that the policy reaches every fully_shard and
where the tensors are, not the host<->device copies themselves; CUDA runs are untested. On GPUs,
params offload needs collectives on host tensors (the gradient norm of clipping): accelerate gives
the process group a gloo backend for the CPU ("cuda:nccl,cpu:gloo") when the FSDP launch config says
fsdp_state_dict_type FULL_STATE_DICT, as configs/accelerate/fsdp_bf16.yaml does.
"""
from __future__ import annotations

import copy
import os
import zlib
from collections.abc import Mapping

import torch

from fastlight.errors import ConfigError


SHARD_MODES = ("auto", "none", "blocks", "root")
OFFLOAD_MODES = ("none", "params", "optimizer", "both")
FORWARD_METHODS = ("forward_shared",)  # entry points other than forward that read the root's parameters


def is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def resolve_shard(cfg, distributed_type: str, num_processes: int, env=None) -> str:
    """The sharding a run uses: none | blocks | root. `distributed_type`: accelerate's (e.g. "FSDP");
    `env`: the launcher's environment (ACCELERATE_USE_FSDP, which accelerate sets for an FSDP config
    even where it reports MULTI_CPU on the CPU, FSDP_AUTO_WRAP_POLICY)."""
    env = os.environ if env is None else env
    flag = lambda key: env.get(key, "false").lower() == "true"
    if str(distributed_type).endswith("DEEPSPEED") or flag("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError("this loop does not run DeepSpeed (no accelerator.prepare); to shard parameters launch "
                          "with configs/accelerate/fsdp_bf16.yaml (FSDP2) instead")
    mode = getattr(cfg, "shard", "auto")
    if mode == "auto":
        if not (str(distributed_type).endswith("FSDP") or flag("ACCELERATE_USE_FSDP")):
            return "none"
        mode = "root" if env.get("FSDP_AUTO_WRAP_POLICY", "").upper() == "NO_WRAP" else "blocks"
    return "none" if num_processes <= 1 else mode


def shard_units(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of `module`: the children (with parameters) of every ModuleList whose
    attribute name ends in `blocks` (Wan `blocks`, HunyuanVideo `transformer_blocks`,
    `single_transformer_blocks`, `refiner_blocks`), outermost only, in registration order."""
    units: list[torch.nn.Module] = []

    def visit(m):
        for name, child in m.named_children():
            if isinstance(child, torch.nn.ModuleList) and name.endswith("blocks"):
                units.extend(b for b in child if any(True for _ in b.parameters()))
            else:
                visit(child)
    visit(module)
    return units


def offloads_params(offload: str) -> bool:
    return offload in ("params", "both")


def offloads_optimizer(offload: str) -> bool:
    """Optimizer state on the host through HostAdamW (under `both` FSDP's policy puts it there)."""
    return offload == "optimizer"


def check_offload(offload: str, shard: str) -> None:
    """Refuse parameter offload without FSDP (`shard`: the resolved mode): one line naming shard=."""
    if offload not in OFFLOAD_MODES:
        raise ConfigError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    if offloads_params(offload) and shard == "none":
        raise ConfigError(f"offload={offload} puts FSDP2's parameter shards on the host and needs sharding, but this "
                          f"run is unsharded (one process, or shard=none): launch 2+ processes with shard=blocks or "
                          f"shard=root, or use offload=optimizer")


def offload_policy(mesh_device_type: str):
    """FSDP2's CPUOffloadPolicy; host memory pinned only where there is a GPU to copy to (pinning
    needs CUDA)."""
    from torch.distributed.fsdp import CPUOffloadPolicy

    return CPUOffloadPolicy(pin_memory=mesh_device_type == "cuda")


def apply_fsdp(module: torch.nn.Module, mode: str, mesh, offload: bool = False) -> None:
    """fully_shard `module` in place: each block and the root (mode blocks), or the root alone
    (mode root); its FORWARD_METHODS gather like forward. mode root never reshards between
    forwards, so its parameters are gathered once per micro-batch however often the recipe calls it;
    mode blocks reshards the root after each forward too, so that outside a forward every parameter
    is a sharded DTensor. `offload`: every unit with CPUOffloadPolicy (shards on the host)."""
    from torch.distributed.fsdp import OffloadPolicy, fully_shard, register_fsdp_forward_method

    policy = offload_policy(mesh.device_type) if offload else OffloadPolicy()
    if offload:  # the policy wants the shards materialised on the host before fully_shard
        module.to("cpu")
    if mode == "blocks":
        for unit in shard_units(module):
            fully_shard(unit, mesh=mesh, offload_policy=policy)
    fully_shard(module, mesh=mesh, reshard_after_forward=mode == "blocks", offload_policy=policy)
    for name in FORWARD_METHODS:
        if callable(getattr(module, name, None)):
            register_fsdp_forward_method(module, name)


def _local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of `t` (its shard of a DTensor; a plain tensor itself), sharing storage."""
    return t.to_local() if is_dtensor(t) else t


class _DeviceState(Mapping):
    """One parameter's host AdamW state as the checkpoint code reads it: a shard-shaped tensor becomes
    a DTensor like the parameter (on its device) only when read, one at a time, so that gathering a
    checkpoint never holds the whole state on the device."""

    def __init__(self, state: dict, param):
        self.state, self.param = state, param

    def __getitem__(self, key):
        from torch.distributed.tensor import DTensor

        v, p = self.state[key], self.param
        if isinstance(v, torch.Tensor) and v.shape == _local(p).shape and v.dim() > 0:
            return DTensor.from_local(v.to(_local(p).device), p.device_mesh, p.placements, run_check=False,
                                      shape=p.shape, stride=p.stride())
        return v

    def __iter__(self):
        return iter(self.state)

    def __len__(self):
        return len(self.state)


class HostAdamW:
    """AdamW whose state (and an fp32 master copy of each parameter) lives on the host while the
    parameters stay on the device: step() copies each gradient (this process's shard of it) to the
    host, runs torch's AdamW there, and copies the updated values back into the parameter. AdamW is
    element-wise, so stepping the shards equals stepping the whole tensor; clipping (the global norm)
    happens on the device gradients before. `param_groups` are the device parameters' (the loop sets
    `lr` there); state_dict / load_state_dict keep torch's layout, sharded entries as DTensors like
    the parameter, so checkpoints are those of a plain AdamW."""

    def __init__(self, params, **hyper):
        self.params = list(params)
        self.host = [_local(p).detach().to("cpu", torch.float32, copy=True) for p in self.params]
        self.inner = torch.optim.AdamW(self.host, **hyper)  # host tensors: the single-tensor path
        self.param_groups = [{**self.inner.param_groups[0], "params": self.params}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        inner = self.inner.param_groups[0]
        inner.update({k: v for k, v in self.param_groups[0].items() if k != "params"})
        for p, h in zip(self.params, self.host):
            h.grad = None if p.grad is None else _local(p.grad).to("cpu", torch.float32)
        self.inner.step()
        for p, h in zip(self.params, self.host):
            _local(p).copy_(h)
            h.grad = None

    def state_dict(self) -> dict:
        sd = self.inner.state_dict()
        state = {i: (_DeviceState(st, self.params[i]) if is_dtensor(self.params[i]) else st)
                 for i, st in sd["state"].items()}
        return {"state": state, "param_groups": sd["param_groups"]}

    def load_state_dict(self, sd: dict) -> None:
        state = {i: {k: (_local(v).to("cpu") if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
                 for i, st in sd["state"].items()}
        self.inner.load_state_dict({"state": state, "param_groups": sd["param_groups"]})
        self.param_groups[0].update({k: v for k, v in self.inner.param_groups[0].items() if k != "params"})

    def tensors(self) -> list[torch.Tensor]:
        """Every host tensor it holds (master copies and state): what a test checks the device of."""
        return [*self.host, *(v for st in self.inner.state.values() for v in st.values()
                               if isinstance(v, torch.Tensor))]


def reshard_all(module: torch.nn.Module) -> None:
    """Free every gathered parameter (after backward; a forward under no_grad leaves the root gathered)."""
    from torch.distributed.fsdp import FSDPModule

    for m in module.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def meta_skeleton(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of `module` whose parameters live on the meta device (no memory) and whose
    buffers are real: `full_module` fills it from a full state dict."""
    memo = {id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
            for p in module.parameters()}
    return copy.deepcopy(module, memo)


def full_module(skeleton: torch.nn.Module, state: dict) -> torch.nn.Module:
    m = copy.deepcopy(skeleton)
    m.load_state_dict(state, assign=True)
    return m


def local_numel(module: torch.nn.Module) -> int:
    """Parameters this process holds (its shards of sharded ones)."""
    return sum(p.to_local().numel() if is_dtensor(p) else p.numel() for p in module.parameters())


class SameForwardsCheck:
    """Under shard=blocks every process must make the same forwards of the root with the same
    `skip` (else the blocks' all-gathers pair up wrongly). A forward pre-hook on the root compares
    a checksum of (forward number, skip, grad mode) across processes; `end()` compares the number of
    forwards after each micro-batch. A mismatch raises on every process (no hang)."""

    def __init__(self, device, rank: int, world: int):
        self.device, self.rank, self.world, self.n = device, rank, world, 0

    def __call__(self, module, args, kwargs):
        self.n += 1
        skip = kwargs.get("skip", args[3] if len(args) > 3 else ())
        self._compare(f"forward {self.n} with skip={sorted(skip or ())}, grad={torch.is_grad_enabled()}")

    def end(self) -> None:
        n, self.n = self.n, 0
        self._compare(f"end of micro-batch after {n} forwards")

    def _compare(self, what: str) -> None:
        import torch.distributed as dist

        code = torch.tensor([zlib.crc32(what.encode())], dtype=torch.int64, device=self.device)
        got = [torch.empty_like(code) for _ in range(self.world)]
        dist.all_gather(got, code)
        if any(int(g) != int(code) for g in got):
            raise RuntimeError(f"shard=blocks needs every process to run the same forwards and blocks, but rank "
                               f"{self.rank} was at {what} while another rank differs (a recipe whose processes run "
                               f"different forwards, like dpp with per_sample=true, needs shard=root)")
