"""The training loop (accelerate) that every recipe runs on: Stage II/III, the decoder, pretraining.

A recipe owns its maths and the modules it trains; the loop owns everything around them:

    recipe.optimized() -> {"generator": Optimized(G, "loss"), "critic": Optimized(D, "critic", lr=...)}
                          (optional; default {"generator": Optimized(recipe.trainable(), "loss")})
    recipe.batch(index, rank, num_processes) -> batch   # a pure function of its arguments (index: micro-batch)
    recipe.step(batch, step) -> {name: Tensor}          # step: the optimizer step (0-based); all are logged
    recipe.save_output(path, module)                    # the generator's EMA (or the generator); run_info set first
    recipe.extra_state() / load_extra_state(state)      # optional: the recipe's own non-module state
    recipe.frozen() -> {"real_score": R}                 # optional: frozen modules the recipe runs (no grads)
    recipe.always_log(step) -> bool                     # optional: log this step whatever log_every says

    out = train(recipe, cfg, hooks=[...])                # cfg: LoopConfig (or a flat subclass of it)

Each optimized module gets its own AdamW. On optimizer step `step` a module is updated exactly when
`recipe.step` returned its loss key (on every micro-batch of that step): DMD returns `critic` on
every step and `loss` (the generator's) on every `critic_steps`-th, so no zero-loss steps exist. The
losses returned are summed and backpropagated once; a recipe keeps them apart (a critic loss reads
the generator's samples detached; a generator loss through a critic runs it with requires_grad off).
Per updated module the loop then syncs gradients (a parameter without one gets zeros on every
process), clips (`grad_clip`, the global norm), steps, and sets the learning rate: the module's
base lr, times the schedule's factor lr_at(cfg, step) / cfg.lr where `scheduled`. The EMA follows
the generator (`ema_decay`, updated every optimizer step with torch's `get_ema_multi_avg_fn` update,
on a plain copy of the generator rather than an `AveragedModel`, whose first update copies instead of
averaging and whose state dict adds a `module.` prefix and a counter). The schedule stays the pure
function `lr_at` of the global step, not a torch LRScheduler: a scheduler counts its own optimizer's
steps (a DMD generator steps only every `critic_steps`-th) and holds state a checkpoint would have to
carry, while `lr_at` needs nothing to resume exactly. `hooks`: callables hook(done_steps,
generator) -> dict | None run on every process after each optimizer step; what they return is
logged (a probe's metrics).

Run folder (`cfg.out`): config.yaml, metrics.jsonl, checkpoints/ (fastlight/train/checkpoint.py:
every module, optimizer, the EMA, RNG, step), and `model/` (what save_output writes). Only rank 0
writes, holding the folder's lock (`OUT/.lock`, fastlight/train/lock.py) for the whole run. A run
whose folder holds a checkpoint resumes from the newest one that verifies (checksums; a corrupt one
is skipped, saying so) and continues exactly: batches depend only on (seed, index, rank), the global
RNG is reseeded from them each micro-batch; metrics.jsonl is cut back to the resumed step.

No wrapper and no accelerator.prepare: a recipe calls its modules any way it likes (several
forwards, some blocks skipped). Processes: one replica each, or every optimized module sharded
with FSDP2 (`shard`: fastlight/train/sharding.py), and every frozen one (`recipe.frozen()`, e.g.
Stage III's real score) the same way: it has no optimizer state, takes no part in gradient syncing
or clipping, and is not checkpointed (an input: the recipe builds it again from its source on
resume); unsharded it is moved to the run's device like the others. Under FSDP a parameter unused
on a step still gets a gradient on every process (the loss gets `0 * sum(p)` over the gathered
parameters, so that every process reduce-scatters the same tensors), checkpoints hold full
tensors, and save_output gets an ordinary full module on the CPU. `shard` is not hashed: changing it on resume keeps the run.
`offload` (none | params | optimizer | both, not hashed either): CPU offload of the parameter shards
(FSDP2's CPUOffloadPolicy; needs sharding) and/or of the optimizer state and EMA (HostAdamW), see
fastlight/train/sharding.py (tested on the CPU only: there host and device are one).

Launch configs for CPU (2 processes, gloo, plain or FSDP), one GPU, DDP and FSDP live in
configs/accelerate/ (each opens with its `accelerate launch` command). `gradient_checkpointing`
turns on the diffusers models' checkpointing. Metrics also go to TensorBoard (`out/tb`, rank 0)
when the tensorboard package is installed. A global `batch_size` (on the config or the recipe)
must divide by the number of processes.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from fastlight.errors import ConfigError, NonFiniteError
from fastlight.train.checkpoint import (GENERATOR, check_resume_config, full_optimizer_state, full_state_dict,
                                        hashed_config, load_optimizers, load_state, prune_checkpoints, read_latest,
                                        save_checkpoint, trim_metrics)
from fastlight.train.lock import RunLock
from fastlight.train.sharding import (OFFLOAD_MODES, SHARD_MODES, HostAdamW, SameForwardsCheck, apply_fsdp,
                                      check_offload, full_module, is_dtensor, meta_skeleton, offloads_optimizer,
                                      offloads_params, reshard_all, resolve_shard)


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
    shard: str = "auto"  # auto | none | blocks | root: FSDP2 parameter sharding (fastlight/train/sharding.py)
    offload: str = "none"  # none | params | optimizer | both: CPU offload (params needs sharding)


@dataclass
class Optimized:
    """A module the loop trains with its own AdamW, on the steps where recipe.step returns `loss`.
    None: the run's value (cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay, cfg.grad_clip)."""

    module: torch.nn.Module
    loss: str = "loss"
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None  # 0 = off
    scheduled: bool = True  # follow the run's warmup + schedule (else a constant lr)


# ---- small pure pieces --------------------------------------------------------------------------

def lr_at(cfg: LoopConfig, step: int) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine or constant."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def part_lr(part: Optimized, cfg: LoopConfig, step: int) -> float:
    base = cfg.lr if part.lr is None else part.lr
    if not part.scheduled:
        return base
    return base * (lr_at(cfg, step) / cfg.lr if cfg.lr else 1.0)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step) * 1_009 + rank


def check_loop_config(cfg: LoopConfig) -> None:
    if cfg.lr_schedule not in ("cosine", "constant"):
        raise ConfigError(f"lr_schedule must be cosine or constant, got {cfg.lr_schedule!r}")
    if cfg.mixed_precision not in ("no", "bf16"):
        raise ConfigError(f"mixed_precision must be no or bf16, got {cfg.mixed_precision!r}")
    for key in ("steps", "grad_accum", "save_every", "keep_last", "log_every"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(cfg, key)}")
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if getattr(cfg, "shard", "auto") not in SHARD_MODES:
        raise ConfigError(f"shard must be one of {', '.join(SHARD_MODES)}, got {cfg.shard!r}")
    if getattr(cfg, "offload", "none") not in OFFLOAD_MODES:
        raise ConfigError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {cfg.offload!r}")


def check_batch_divides(batch_size, num_processes: int) -> None:
    """A global batch is split evenly across processes; refuse one that does not divide (None = no batch_size)."""
    if batch_size is None or num_processes <= 1:
        return
    if int(batch_size) % num_processes:
        raise ConfigError(f"batch_size {batch_size} does not divide across {num_processes} processes; "
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


def optimized_parts(recipe) -> dict[str, Optimized]:
    """recipe.optimized(), or the one generator recipe.trainable(); the generator first."""
    parts = recipe.optimized() if hasattr(recipe, "optimized") else {GENERATOR: Optimized(recipe.trainable())}
    if GENERATOR not in parts:
        raise ValueError(f"{type(recipe).__name__}.optimized() must name a {GENERATOR!r} (what save_output gets)")
    return {GENERATOR: parts[GENERATOR], **{k: v for k, v in parts.items() if k != GENERATOR}}


def frozen_parts(recipe, optimized: dict[str, "Optimized"]) -> dict[str, torch.nn.Module]:
    """recipe.frozen() ({} without the hook): modules the recipe runs but the loop does not train.
    A module also optimised, or one with a parameter that requires grad, is a recipe bug."""
    frozen = dict(recipe.frozen()) if hasattr(recipe, "frozen") else {}
    trained = {id(p.module) for p in optimized.values()}
    for name, m in frozen.items():
        if id(m) in trained or name in optimized:
            raise ValueError(f"{type(recipe).__name__}.frozen() names {name!r}, which optimized() trains")
        if any(q.requires_grad for q in m.parameters()):
            raise ValueError(f"{type(recipe).__name__}.frozen() module {name!r} has parameters that require grad "
                             "(call requires_grad_(False) on it)")
    return frozen


def progress_postfix(logs: dict, losses: list[str], probed: dict) -> dict[str, str]:
    """What the progress bar shows: the losses computed on this step (those of the modules updated),
    then the hooks' metrics."""
    return {k: f"{logs[k]:.4g}" for k in dict.fromkeys(losses)} | {k: f"{v:.3g}" for k, v in probed.items()}


def ema_decay_at(cfg: LoopConfig, step: int) -> float:
    """The EMA's decay after optimizer step `step` (0-based): min(ema_decay, (1 + step) / (10 + step)),
    so the early EMA is not dominated by the initial weights."""
    return min(cfg.ema_decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter-wise (torch's EMA: one fused foreach lerp),
    on the EMA's device (the host when offloaded)."""
    ema_params = list(ema.parameters())
    model_params = [pm.detach().to(pe.device, pe.dtype) for pe, pm in zip(ema_params, model.parameters(), strict=True)]
    get_ema_multi_avg_fn(decay)(ema_params, model_params, None)


def _average_grads(params: list[torch.nn.Parameter], accelerator) -> None:
    """Materialise missing grads as zeros (same update rule on every rank) and average across ranks
    (sharded parameters' grads were reduce-scattered, i.e. averaged, by FSDP already)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        elif is_dtensor(p) and p.grad.placements != p.placements:
            # a grad that autograd computed through DTensor ops may come back replicated or partial
            p.grad = p.grad.redistribute(p.device_mesh, p.placements)
        if accelerator.num_processes > 1 and not is_dtensor(p):
            p.grad = accelerator.reduce(p.grad, reduction="mean")


# ---- the loop -------------------------------------------------------------------------------------

class _Run:
    """The state of one training run: its parts (module + AdamW each), EMA, sharding, accelerator."""

    def __init__(self, recipe, cfg: LoopConfig):
        from accelerate import Accelerator

        check_loop_config(cfg)
        self.recipe, self.cfg = recipe, cfg
        self.acc = Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.main = self.acc.is_main_process
        self.out = Path(cfg.out)
        check_batch_divides(global_batch_size(recipe, cfg), self.world)
        self.shard = resolve_shard(cfg, self.acc.distributed_type.value, self.world)
        self.sharded = self.shard != "none"
        self.offload = getattr(cfg, "offload", "none")
        check_offload(self.offload, self.shard)

    def build(self) -> None:
        """Modules (same initialisation on every rank), EMA, resume weights, sharding, optimizers."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.parts = optimized_parts(self.recipe)
        self.modules = {n: p.module for n, p in self.parts.items()}
        self.model = self.modules[GENERATOR]
        self.frozen = frozen_parts(self.recipe, self.parts)
        if not self.sharded:
            for m in [*self.modules.values(), *self.frozen.values()]:
                m.to(self.acc.device)  # in place: the recipe's references stay valid
        if cfg.gradient_checkpointing and not sum(enable_gradient_checkpointing(m) for m in self.modules.values()) \
                and self.main:
            print(f"warning: gradient_checkpointing=true but {type(self.model).__name__} holds no model that supports it")
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if cfg.ema_decay > 0 else None
        if self.ema is not None and not self.sharded and offloads_optimizer(self.offload):
            self.ema.to("cpu")  # with the optimizer state, on the host
        self.hashed = hashed_config(cfg)  # once per run: it reads the inputs' content identities
        # the newest checkpoint that verifies; full weights loaded now, before any sharding
        self.loaded = read_latest(self.out, self.modules, self.ema, list(self.parts),
                                  want_extra=hasattr(self.recipe, "load_extra_state"),
                                  check=lambda state: check_resume_config(self.out, state, cfg, self.hashed),
                                  say=print if self.main else (lambda line: None))
        self.skeleton, self.checks = None, []
        if self.sharded:
            self._apply_sharding()
        self.opts = {}
        for n, p in self.parts.items():
            params = [q for q in p.module.parameters() if q.requires_grad]
            adamw = HostAdamW if offloads_optimizer(self.offload) else torch.optim.AdamW
            self.opts[n] = adamw(
                params, lr=part_lr(p, cfg, 0), betas=p.betas or (cfg.beta1, cfg.beta2),
                weight_decay=cfg.weight_decay if p.weight_decay is None else p.weight_decay)
        self.params = {n: [q for g in o.param_groups for q in g["params"]] for n, o in self.opts.items()}

    def _apply_sharding(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self.skeleton = meta_skeleton(self.model) if self.main else None
        mesh = init_device_mesh(self.acc.device.type, (self.world,))
        host = offloads_params(self.offload)
        for m in [*self.modules.values(), *self.frozen.values()]:
            apply_fsdp(m, self.shard, mesh, offload=host)
        if self.ema is not None:  # the EMA's shards on the host under any offload
            apply_fsdp(self.ema, self.shard, mesh, offload=host or offloads_optimizer(self.offload))
        if self.shard == "blocks":
            for m in [*self.modules.values(), *self.frozen.values()]:
                check = SameForwardsCheck(self.acc.device, self.rank, self.world)
                m.register_forward_pre_hook(check, prepend=True, with_kwargs=True)
                self.checks.append(check)
        if self.main:
            local = sum(p.to_local().numel() for p in self.model.parameters())
            print(f"FSDP2 shard={self.shard} over {self.world} processes: {local} of "
                  f"{sum(p.numel() for p in self.model.parameters())} generator parameters on rank 0 "
                  f"({len(self.modules)} trained and {len(self.frozen)} frozen module(s) sharded)"
                  + ("" if self.offload == "none" else f", CPU offload {self.offload}"))

    def resume(self) -> tuple[int, float]:
        """Optimizer, recipe and RNG state of the checkpoint read; returns (step, wall time before)."""
        if self.loaded is None:
            return 0, 0.0
        load_optimizers(self.loaded, self.opts)
        state = load_state(self.loaded, self.recipe)
        self.loaded = None  # the optimizer states were copied into the optimizers: free them
        if self.main:
            print(f"resuming {self.out} from step {state['step']}")
            trim_metrics(self.out / "metrics.jsonl", state["step"])
        return state["step"], state.get("wall_time_s", 0.0)

    def one_step(self, step: int) -> tuple[dict, list[str]]:
        """One optimizer step = grad_accum micro-batches; returns (rank-averaged logs, updated parts)."""
        cfg, parts = self.cfg, self.parts
        for o in self.opts.values():
            o.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        stepped = None
        for micro in range(cfg.grad_accum):
            index = step * cfg.grad_accum + micro
            torch.manual_seed(step_seed(cfg.seed, index, self.rank))
            batch = self.recipe.batch(index, self.rank, self.world)
            with self.acc.autocast():
                losses = self.recipe.step(batch, step)
            for check in self.checks:
                check.end()
            losses = {k: v.full_tensor() if is_dtensor(v) else v for k, v in losses.items()}
            here = [n for n, p in parts.items() if p.loss in losses]
            if stepped is not None and here != stepped:
                raise RuntimeError(f"{type(self.recipe).__name__}.step returned losses for {here} on micro-batch "
                                   f"{micro} but {stepped} before, within one optimizer step")
            stepped = here
            if not stepped:
                raise ValueError(f"{type(self.recipe).__name__}.step returned {sorted(losses)}: none is the loss of "
                                 f"a trained module ({', '.join(sorted({p.loss for p in parts.values()}))})")
            keys = list(losses)
            logged = torch.stack([losses[k].detach().float().mean() for k in keys])
            if self.world > 1:
                logged = self.acc.reduce(logged, reduction="mean")
            for key in dict.fromkeys(parts[n].loss for n in stepped):
                if not torch.isfinite(logged[keys.index(key)]):
                    raise NonFiniteError(
                        f"non-finite {key} at step {step + 1} (micro-batch {micro}); nothing was saved for it: "
                        f"lower lr (now {cfg.lr}) and resume from the last checkpoint in {cfg.out}")
            total = sum(losses[key] for key in dict.fromkeys(parts[n].loss for n in stepped)) / cfg.grad_accum
            if self.sharded:  # FSDP reduce-scatters only the gradients that exist: give every gathered
                # (unsharded) parameter one, so that a parameter unused on this process (a block skipped
                # here only) still sends its zeros and the collectives have the same size everywhere
                gathered = [q for n in stepped for q in parts[n].module.parameters()
                            if q.requires_grad and not is_dtensor(q)]
                if gathered:
                    total = total + 0.0 * sum(q.sum() for q in gathered)
            total.backward()
            for k, v in zip(keys, logged.tolist()):
                totals[k] = totals.get(k, 0.0) + v / cfg.grad_accum
        if self.sharded:
            for m in [*self.modules.values(), *self.frozen.values()]:
                reshard_all(m)
        for n in stepped:
            part, params = parts[n], self.params[n]
            for g in self.opts[n].param_groups:
                g["lr"] = part_lr(part, cfg, step)
            _average_grads(params, self.acc)
            clip = cfg.grad_clip if part.grad_clip is None else part.grad_clip
            if clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, clip)  # the global norm, sharded or not
                totals["grad_norm" if n == GENERATOR else f"grad_norm_{n}"] = float(
                    norm.full_tensor() if is_dtensor(norm) else norm)
            self.opts[n].step()
        return totals, stepped

    def save(self, done: int, wall: float) -> None:
        """A checkpoint of every part (gathered first when sharded: every process takes part)."""
        if self.sharded:
            parts = {n: (full_state_dict(m, self.main), full_optimizer_state(self.opts[n], self.main))
                     for n, m in self.modules.items()}
            ema = None if self.ema is None else full_state_dict(self.ema, self.main)
        else:
            parts = {n: (m, self.opts[n]) for n, m in self.modules.items()}
            ema = self.ema
        if self.main:
            extra = self.recipe.extra_state() if hasattr(self.recipe, "extra_state") else None
            save_checkpoint(self.out, done, parts, ema, self.cfg, wall, extra, hashed=self.hashed)
            prune_checkpoints(self.out, self.cfg.keep_last)
        del parts, ema
        self.acc.wait_for_everyone()

    def result(self):
        """The generator's EMA (or the generator) as an ordinary full module on rank 0 (None elsewhere)."""
        result = self.ema if self.ema is not None else self.model
        if self.sharded:
            full = full_state_dict(result, self.main)
            result = full_module(self.skeleton, full) if self.main else None
        return result


def train(recipe, cfg: LoopConfig, progress: bool = True, hooks=()) -> Path:
    """Train `recipe` with `cfg`; resume from cfg.out's newest checkpoint that verifies; return the
    output folder. Rank 0 holds cfg.out's lock (fastlight/train/lock.py) for the whole run: a second
    run on the folder is refused instead of doubling metrics.jsonl and racing on checkpoint names."""
    run = _Run(recipe, cfg)
    lock = RunLock(run.out, "training folder (out=)").acquire() if run.main else None
    try:
        return _train(run, recipe, cfg, progress, hooks)
    finally:
        if lock is not None:
            lock.release()


def _train(run: _Run, recipe, cfg: LoopConfig, progress: bool, hooks) -> Path:
    from tqdm import tqdm

    from fastlight.config import save_config

    run.build()
    start, wall_before = run.resume()
    main, out = run.main, run.out
    if main:
        save_config(cfg, out)
    run.acc.wait_for_everyone()

    metrics_f = open(out / "metrics.jsonl", "a") if main else None
    tb = _tb_writer(out) if main else None
    t0 = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not (progress and main),
               desc=type(recipe).__name__)
    for m in run.modules.values():
        m.train()
    always_log = getattr(recipe, "always_log", lambda step: False)
    try:
        for step in bar:
            logs, stepped = run.one_step(step)
            if run.ema is not None:
                ema_update(run.ema, run.model, ema_decay_at(cfg, step))
            done = step + 1
            probed = {}
            for hook in hooks:
                probed.update(hook(done, run.model) or {})
            if main and (done % cfg.log_every == 0 or done == cfg.steps or probed or always_log(step)):
                rec = {"step": done, "lr": lr_at(cfg, step), **logs, **probed}
                metrics_f.write(json.dumps(rec) + "\n")
                metrics_f.flush()
                if tb is not None:
                    for k, v in rec.items():
                        if k != "step" and isinstance(v, (int, float)):
                            tb.add_scalar(k, v, done)
                bar.set_postfix(progress_postfix(logs, [run.parts[n].loss for n in stepped], probed))
            if done % cfg.save_every == 0 or done == cfg.steps:
                run.save(done, wall_before + time.time() - t0)
    finally:
        if metrics_f is not None:
            metrics_f.close()
        if tb is not None:
            tb.close()
    final = out / "model"
    result = run.result()
    if main:
        recipe.run_info = {"steps": cfg.steps, "wall_time_s": round(wall_before + time.time() - t0, 2),
                           "num_processes": run.world}
        if run.sharded:
            recipe.run_info["shard"] = run.shard
        if run.offload != "none":
            recipe.run_info["offload"] = run.offload
        recipe.save_output(final, result)
    run.acc.wait_for_everyone()
    return final
