"""The one small training loop (accelerate). A recipe supplies the model and the loss.

    recipe.trainable() -> nn.Module                  # optimised (AdamW) and EMA'd
    recipe.batch(step, rank, world_size) -> batch    # pure function of its arguments
    recipe.step(batch) -> {"loss": Tensor, ...}      # "loss" is backpropagated, all are logged
    recipe.save_output(path, ema_module)             # the final artefact (recipe.run_info is set first)

    out = train(recipe, cfg)                          # cfg: LoopConfig (or a flat subclass of it)

Run folder (`cfg.out`): config.yaml, metrics.jsonl, checkpoints/step-XXXXXXXX/{model,ema}.safetensors
+ optimizer.pt + state.json, and `model/` (whatever save_output writes). Only rank 0 writes.
A run whose folder holds a checkpoint resumes from the latest one and continues exactly:
batches depend only on the step, the global RNG is reseeded from (seed, step, rank) each step.

No wrapper and no accelerator.prepare: a recipe calls its module any way it likes (several
forwards, some blocks skipped). Two ways to spread a run over processes (`shard`):

  none   a full replica per process; gradients are averaged explicitly (one all-reduce per
         parameter per optimizer step) and gradient accumulation is a plain local sum.
  blocks PyTorch FSDP2 (`fully_shard`, in place: the hooks sit on the module itself, so the
         recipe's own calls all-gather): one unit per transformer block (the children of every
         ModuleList named `*blocks`, e.g. Wan's `model.blocks`) plus the root. Parameters,
         gradients (reduce-scattered by FSDP), AdamW state and the EMA are sharded; a process holds
         about 1/N of the model plus the block it is running. Every process must run the same
         forwards with the same `skip=` (checked at each forward with a tiny all-gather: a mismatch
         stops the run with a one-line error instead of pairing the wrong collectives).
  root   FSDP2 with one unit for the whole module, never resharded between forwards: parameters
         are gathered once per micro-batch and gradients reduce-scattered once, so processes may
         run different forwards (dpp draws its skip sets per process). Sharded at rest (parameters,
         gradients, AdamW state, EMA), full while a micro-batch runs.
  auto   (default) blocks when launched with accelerate's FSDP type (configs/accelerate/fsdp_*.yaml;
         root when its fsdp_auto_wrap_policy is NO_WRAP), none otherwise. One process: none.

Under either FSDP mode a parameter unused on a step gets a zero gradient on every process (the
same rule as `none`; the loss gets `0 * sum(p)` over the gathered parameters so that every process
reduce-scatters the same tensors), clipping uses the global norm, and checkpoints hold FULL
tensors, gathered to rank 0, in the same files as an unsharded run (optimizer.pt keeps torch's
own layout), so a checkpoint resumes sharded or not and `save_output` gets an ordinary full module
(on the CPU). Only the trainable module is sharded (a recipe's teacher or critic is not);
parameters are gathered in fp32 and bf16 stays accelerate's autocast. `shard` is not hashed:
changing it on resume keeps the run. DeepSpeed is refused (ZeRO-3 needs accelerator.prepare,
which this loop does not use): launch with an FSDP config instead.

Launch configs for CPU (2 processes, gloo, plain or FSDP), one GPU, DDP and FSDP live in
configs/accelerate/ (each opens with its `accelerate launch` command). `gradient_checkpointing`
turns on the diffusers model's checkpointing (the model adapter's block loop honours it).
Metrics also go to TensorBoard (`out/tb`, rank 0) when the tensorboard package is installed.
A global `batch_size` (on the config or the recipe) must divide by the number of processes.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


@dataclass
class LoopConfig:
    out: str = "runs/train"
    steps: int = 300
    lr: float = 1e-4
    lr_schedule: str = "cosine"  # cosine | constant (both after a linear warmup)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0  # 0 = off
    grad_accum: int = 1
    ema_decay: float = 0.0  # 0 = off
    save_every: int = 100
    keep_last: int = 2
    log_every: int = 10
    seed: int = 0
    mixed_precision: str = "no"  # no | bf16
    cpu: bool = False  # force CPU even when an accelerator is present
    gradient_checkpointing: bool = False  # recompute block activations in backward (less memory, same maths)
    shard: str = "auto"  # auto | none | blocks | root: FSDP2 parameter sharding (module docstring)


_NOT_HASHED = ("out", "steps", "gradient_checkpointing", "shard")  # may change on resume without changing the result
SHARD_MODES = ("auto", "none", "blocks", "root")


# ---- small pure pieces --------------------------------------------------------------------------

def lr_at(cfg: LoopConfig, step: int) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine or constant."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def hashed_config(cfg) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_HASHED}


def config_hash(cfg) -> str:
    return hashlib.sha256(json.dumps(hashed_config(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 1_009 + rank


def check_loop_config(cfg: LoopConfig) -> None:
    if cfg.lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be cosine or constant, got {cfg.lr_schedule!r}")
    if cfg.mixed_precision not in ("no", "bf16"):
        raise ValueError(f"mixed_precision must be no or bf16, got {cfg.mixed_precision!r}")
    for key in ("steps", "grad_accum", "save_every", "keep_last", "log_every"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if getattr(cfg, "shard", "auto") not in SHARD_MODES:
        raise ValueError(f"shard must be one of {', '.join(SHARD_MODES)}, got {cfg.shard!r}")


def resolve_shard(cfg, distributed_type: str, num_processes: int, env=None) -> str:
    """The sharding a run uses: none | blocks | root (see the module docstring). `distributed_type`:
    accelerate's (e.g. "FSDP"); `env`: the launcher's environment (ACCELERATE_USE_FSDP, which
    accelerate sets for an FSDP config even where it reports MULTI_CPU on the CPU, FSDP_AUTO_WRAP_POLICY)."""
    env = os.environ if env is None else env
    flag = lambda key: env.get(key, "false").lower() == "true"
    if str(distributed_type).endswith("DEEPSPEED") or flag("ACCELERATE_USE_DEEPSPEED"):
        raise ValueError("this loop does not run DeepSpeed (no accelerator.prepare); to shard parameters launch "
                         "with configs/accelerate/fsdp_bf16.yaml (FSDP2) instead")
    mode = getattr(cfg, "shard", "auto")
    if mode == "auto":
        if not (str(distributed_type).endswith("FSDP") or flag("ACCELERATE_USE_FSDP")):
            return "none"
        mode = "root" if env.get("FSDP_AUTO_WRAP_POLICY", "").upper() == "NO_WRAP" else "blocks"
    return "none" if num_processes <= 1 else mode


def check_batch_divides(batch_size, num_processes: int) -> None:
    """A global batch is split evenly across processes; refuse one that does not divide (None = no batch_size)."""
    if batch_size is None or num_processes <= 1:
        return
    if int(batch_size) % num_processes:
        raise ValueError(f"batch_size {batch_size} does not divide across {num_processes} processes; "
                         f"use a multiple of {num_processes}")


def global_batch_size(recipe, cfg):
    """The global `batch_size` of the config, else of the recipe (or its .cfg), else None."""
    for owner in (cfg, recipe, getattr(recipe, "cfg", None)):
        bs = getattr(owner, "batch_size", None)
        if isinstance(bs, int) and not isinstance(bs, bool):
            return bs
    return None


def enable_gradient_checkpointing(module: torch.nn.Module) -> int:
    """Call `enable_gradient_checkpointing()` on every diffusers model inside `module` (a Denoiser holds
    one as `.model`); returns how many were switched on (0: nothing supports it)."""
    n = 0
    for m in module.modules():
        fn = getattr(m, "enable_gradient_checkpointing", None)
        if callable(fn) and getattr(m, "_supports_gradient_checkpointing", True):
            fn()
            n += 1
    return n


def _tb_writer(out: Path):
    """A TensorBoard SummaryWriter on out/tb, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError (no tensorboard package) or a broken install: metrics.jsonl only
        return None
    return SummaryWriter(log_dir=str(out / "tb"))


# ---- checkpoints ----------------------------------------------------------------------------------

def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (those renamed into place), oldest first."""
    root = out / "checkpoints"
    if not root.exists():
        return []
    done = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("step-") and (d / "state.json").exists()]
    return sorted(done, key=lambda d: int(d.name[5:]))


def _tensors(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _full(t: torch.Tensor, keep: bool):
    """A full CPU copy of `t` (a sharded DTensor is all-gathered: every process must call this in
    the same order); None where not `keep`."""
    if _is_dtensor(t):
        t = t.full_tensor()
    return t.detach().cpu().contiguous() if keep else None


def full_state_dict(module: torch.nn.Module, keep: bool = True) -> dict:
    """The module's state dict with full CPU tensors, gathered if sharded (a collective: call it on
    every process); an empty dict where not `keep` (the other ranks)."""
    out = {k: _full(v, keep) for k, v in module.state_dict().items()}
    return out if keep else {}


def full_optimizer_state(opt: torch.optim.Optimizer, keep: bool = True) -> dict:
    """opt.state_dict() (torch's layout: integer parameter ids) with sharded tensors gathered to
    full CPU tensors (a collective); {} where not `keep`."""
    sd = opt.state_dict()
    state = {i: {k: _full(v, keep) if isinstance(v, torch.Tensor) and _is_dtensor(v) else v for k, v in st.items()}
             for i, st in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]} if keep else {}


def _shard_optimizer_state(sd: dict, params: list) -> dict:
    """A full optimizer state dict (as saved) cut to this process's shards of the sharded `params`."""
    from torch.distributed.tensor import distribute_tensor

    ids = [i for g in sd["param_groups"] for i in g["params"]]
    by_id = dict(zip(ids, params))
    state = {}
    for i, st in sd["state"].items():
        p = by_id[i]
        state[i] = {k: (distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)
                        if _is_dtensor(p) and isinstance(v, torch.Tensor) and v.shape == p.shape else v)
                    for k, v in st.items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state().tolist(), "python": json.loads(json.dumps(random.getstate()))}
    if torch.cuda.is_available():
        st["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(torch.tensor(st["torch"], dtype=torch.uint8))
    v, inner, g = st["python"]
    random.setstate((v, tuple(inner), g))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in st["cuda"]])


def save_checkpoint(out: Path, step: int, model, ema, opt, cfg, wall_time_s: float, extra: dict | None = None) -> Path:
    """Write checkpoints/step-N atomically (tmp folder, then rename); caller keeps only rank 0 here.
    model / ema / opt: modules and the optimizer, or their (full) state dicts.
    `extra`: a recipe's own state (e.g. ICMD's discriminator and its optimiser), saved as extra.pt."""
    final = checkpoint_dir(out, step)
    tmp = final.with_name(f".tmp-{final.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(model if isinstance(model, dict) else _tensors(model), str(tmp / "model.safetensors"))
    if ema is not None:
        save_file(ema if isinstance(ema, dict) else _tensors(ema), str(tmp / "ema.safetensors"))
    torch.save(opt if isinstance(opt, dict) else opt.state_dict(), tmp / "optimizer.pt")
    if extra is not None:
        torch.save(extra, tmp / "extra.pt")
    state = {"step": step, "config_hash": config_hash(cfg), "config": hashed_config(cfg),
             "wall_time_s": wall_time_s, "rng": rng_state()}
    (tmp / "state.json").write_text(json.dumps(state))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def prune_checkpoints(out: Path, keep_last: int) -> None:
    for d in list_checkpoints(out)[:-keep_last]:
        shutil.rmtree(d)


def check_resume_config(out: Path, state: dict, cfg) -> None:
    if state.get("config_hash") == config_hash(cfg):
        return
    old, new = state.get("config", {}), hashed_config(cfg)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    what = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4]) + (" ..." if len(diff) > 4 else "")
    raise ValueError(f"resume folder {out} was made with a different config ({what}); use a new --out")


def load_checkpoint(ck: Path, model, ema, opt, recipe=None, weights: bool = True) -> dict:
    """Load a checkpoint into the run. weights=False: model and ema were loaded already (a sharded
    run loads the full weights before sharding). A sharded optimizer gets its shards of the state."""
    if weights:
        model.load_state_dict(load_file(str(ck / "model.safetensors")))
    if recipe is not None and hasattr(recipe, "load_extra_state") and (ck / "extra.pt").exists():
        recipe.load_extra_state(torch.load(ck / "extra.pt", weights_only=True))
    if weights and ema is not None:
        ema.load_state_dict(load_file(str(ck / "ema.safetensors")))
    sd = torch.load(ck / "optimizer.pt", weights_only=True)
    params = [p for g in opt.param_groups for p in g["params"]]
    opt.load_state_dict(_shard_optimizer_state(sd, params) if any(_is_dtensor(p) for p in params) else sd)
    state = json.loads((ck / "state.json").read_text())
    set_rng_state(state["rng"])
    return state


def _trim_metrics(path: Path, step: int) -> None:
    """After a kill, drop metric lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))


# ---- the loop -------------------------------------------------------------------------------------

def _average_grads(params: list[torch.nn.Parameter], accelerator) -> None:
    """Materialise missing grads as zeros (same update rule on every rank) and average across ranks
    (sharded parameters' grads were reduce-scattered, i.e. averaged, by FSDP already)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        elif _is_dtensor(p) and p.grad.placements != p.placements:
            # a grad that autograd computed through DTensor ops (a loss built from the sharded
            # parameters themselves) may come back replicated or partial: to the parameter's shards
            p.grad = p.grad.redistribute(p.device_mesh, p.placements)
        if accelerator.num_processes > 1 and not _is_dtensor(p):
            p.grad = accelerator.reduce(p.grad, reduction="mean")


# ---- FSDP2 sharding ---------------------------------------------------------------------------------

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
    (mode root). mode root never reshards between forwards, so its parameters are gathered once per
    micro-batch however often the recipe calls it; mode blocks reshards the root after each forward
    too, so that outside a forward every parameter is a sharded DTensor (a loss built from the
    parameters themselves, like dmd's zero loss, then never mixes plain tensors and DTensors)."""
    from torch.distributed.fsdp import fully_shard

    if mode == "blocks":
        for unit in shard_units(module):
            fully_shard(unit, mesh=mesh)
    fully_shard(module, mesh=mesh, reshard_after_forward=mode == "blocks")


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
                               f"{self.rank} was at {what} while another rank differs (a recipe that draws skip sets "
                               f"per process, like dpp, needs shard=root)")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach().to(pe.dtype), 1 - decay)


def train(recipe, cfg: LoopConfig, progress: bool = True) -> Path:
    """Train `recipe` with `cfg`; resume from cfg.out's latest checkpoint; return the output folder."""
    from accelerate import Accelerator
    from tqdm import tqdm

    from fastlight.config import save_config

    check_loop_config(cfg)
    accelerator = Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    out = Path(cfg.out)
    check_batch_divides(global_batch_size(recipe, cfg), world)
    shard = resolve_shard(cfg, accelerator.distributed_type.value, world)
    sharded = shard != "none"

    torch.manual_seed(cfg.seed)  # same initialisation on every rank
    model = recipe.trainable()
    if not sharded:
        model = model.to(accelerator.device)
    if getattr(cfg, "gradient_checkpointing", False) and not enable_gradient_checkpointing(model) and main:
        print(f"warning: gradient_checkpointing=true but {type(model).__name__} holds no model that supports it")
    ema = None
    if cfg.ema_decay > 0:
        ema = copy.deepcopy(model).requires_grad_(False)

    start, wall_before = 0, 0.0
    found = list_checkpoints(out)
    if found:
        state = json.loads((found[-1] / "state.json").read_text())
        check_resume_config(out, state, cfg)
        if sharded:  # full weights into the full modules, then shard them
            model.load_state_dict(load_file(str(found[-1] / "model.safetensors")))
            if ema is not None:
                ema.load_state_dict(load_file(str(found[-1] / "ema.safetensors")))
    skeleton, check = None, None
    if sharded:
        from torch.distributed.device_mesh import init_device_mesh

        skeleton = meta_skeleton(model) if main else None
        mesh = init_device_mesh(accelerator.device.type, (world,))
        apply_fsdp(model, shard, mesh)
        if ema is not None:
            apply_fsdp(ema, shard, mesh)
        if shard == "blocks":
            check = SameForwardsCheck(accelerator.device, rank, world)
            model.register_forward_pre_hook(check, prepend=True, with_kwargs=True)
        if main:
            local = sum(p.to_local().numel() for p in model.parameters())
            print(f"FSDP2 shard={shard} over {world} processes: {local} of "
                  f"{sum(p.numel() for p in model.parameters())} parameters on rank 0")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    if found:
        state = load_checkpoint(found[-1], model, ema, opt, recipe, weights=not sharded)
        start, wall_before = state["step"], state.get("wall_time_s", 0.0)
        if main:
            print(f"resuming {out} from step {start}")
            _trim_metrics(out / "metrics.jsonl", start)
    if main:
        save_config(cfg, out)
    accelerator.wait_for_everyone()

    metrics_f = open(out / "metrics.jsonl", "a") if main else None
    tb = _tb_writer(out) if main else None
    t0 = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not (progress and main),
               desc=type(recipe).__name__)
    model.train()
    try:
        for step in bar:
            lr = lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            logs = _one_step(recipe, cfg, model, params, opt, accelerator, step, rank, world, check, sharded)
            if ema is not None:
                ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
            done = step + 1
            if main and (done % cfg.log_every == 0 or done == cfg.steps):
                rec = {"step": done, "lr": lr, **logs}
                metrics_f.write(json.dumps(rec) + "\n")
                metrics_f.flush()
                if tb is not None:
                    for k, v in rec.items():
                        if k != "step" and isinstance(v, (int, float)):
                            tb.add_scalar(k, v, done)
                bar.set_postfix(loss=f"{logs['loss']:.4g}")
            if done % cfg.save_every == 0 or done == cfg.steps:
                snap = model, ema, opt
                if sharded:  # every process takes part in the gathers; rank 0 keeps the full tensors
                    snap = (full_state_dict(model, main), None if ema is None else full_state_dict(ema, main),
                            full_optimizer_state(opt, main))
                if main:
                    extra = recipe.extra_state() if hasattr(recipe, "extra_state") else None
                    save_checkpoint(out, done, *snap, cfg, wall_before + time.time() - t0, extra)
                    prune_checkpoints(out, cfg.keep_last)
                del snap
                accelerator.wait_for_everyone()
    finally:
        if metrics_f is not None:
            metrics_f.close()
        if tb is not None:
            tb.close()
    final = out / "model"
    result = ema if ema is not None else model
    if sharded:  # rank 0 gets an ordinary full module on the CPU
        full = full_state_dict(result, main)
        result = full_module(skeleton, full) if main else None
        del full
    if main:
        recipe.run_info = {"steps": cfg.steps, "wall_time_s": round(wall_before + time.time() - t0, 2),
                           "num_processes": world}
        if sharded:
            recipe.run_info["shard"] = shard
        recipe.save_output(final, result)
    accelerator.wait_for_everyone()
    return final


def _one_step(recipe, cfg, model, params, opt, accelerator, step, rank, world, check=None, sharded=False) -> dict:
    """One optimizer step = grad_accum micro-batches; returns the rank-averaged logs."""
    opt.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        index = step * cfg.grad_accum + micro
        torch.manual_seed(step_seed(cfg.seed, index, rank))
        batch = recipe.batch(index, rank, world)
        with accelerator.autocast():
            losses = recipe.step(batch)
        if check is not None:
            check.end()
        # a loss built from sharded parameters themselves (e.g. dmd's zero loss) is a DTensor
        losses = {k: v.full_tensor() if _is_dtensor(v) else v for k, v in losses.items()}
        logged = torch.stack([v.detach().float().mean() for v in losses.values()])
        if world > 1:
            logged = accelerator.reduce(logged, reduction="mean")
        if not torch.isfinite(logged[list(losses).index("loss")]):
            raise FloatingPointError(f"non-finite loss at step {step + 1} (micro-batch {micro}); nothing was saved "
                                     f"for it: lower lr (now {cfg.lr}) and resume from the last checkpoint in {cfg.out}")
        loss = losses["loss"] / cfg.grad_accum
        if sharded:  # FSDP reduce-scatters only the gradients that exist: give every gathered (unsharded)
            # parameter one, so that a parameter unused on this process (a block skipped here only)
            # still sends its zeros and the collectives have the same size everywhere
            gathered = [p for p in model.parameters() if p.requires_grad and not _is_dtensor(p)]
            if gathered:
                loss = loss + 0.0 * sum(p.sum() for p in gathered)
        loss.backward()
        for k, v in zip(losses, logged.tolist()):
            totals[k] = totals.get(k, 0.0) + v / cfg.grad_accum
    if any(_is_dtensor(p) for p in params):
        reshard_all(model)
    _average_grads(params, accelerator)
    if cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)  # the global norm, sharded or not
        totals["grad_norm"] = float(norm.full_tensor() if _is_dtensor(norm) else norm)
    opt.step()
    return totals
