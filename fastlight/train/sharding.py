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
"""
from __future__ import annotations

import copy
import os
import zlib

import torch

from fastlight.errors import ConfigError


SHARD_MODES = ("auto", "none", "blocks", "root")
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


def apply_fsdp(module: torch.nn.Module, mode: str, mesh) -> None:
    """fully_shard `module` in place: each block and the root (mode blocks), or the root alone
    (mode root); its FORWARD_METHODS gather like forward. mode root never reshards between
    forwards, so its parameters are gathered once per micro-batch however often the recipe calls it;
    mode blocks reshards the root after each forward too, so that outside a forward every parameter
    is a sharded DTensor."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    if mode == "blocks":
        for unit in shard_units(module):
            fully_shard(unit, mesh=mesh)
    fully_shard(module, mesh=mesh, reshard_after_forward=mode == "blocks")
    for name in FORWARD_METHODS:
        if callable(getattr(module, name, None)):
            register_fsdp_forward_method(module, name)


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
