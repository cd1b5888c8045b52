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

Gradients are averaged across processes explicitly (one all-reduce per parameter per optimizer
step) instead of through a DDP wrapper, so a recipe may call its module any way it likes
(several forwards, some blocks unused) and gradient accumulation is a plain local sum.

Launch configs for CPU (2 processes, gloo), one GPU, DDP, FSDP and DeepSpeed ZeRO-3 live in
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
import random
import shutil
import time
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


_NOT_HASHED = ("out", "steps", "gradient_checkpointing")  # may change on resume without changing the result


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
    `extra`: a recipe's own state (e.g. ICMD's discriminator and its optimiser), saved as extra.pt."""
    final = checkpoint_dir(out, step)
    tmp = final.with_name(f".tmp-{final.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_tensors(model), str(tmp / "model.safetensors"))
    if ema is not None:
        save_file(_tensors(ema), str(tmp / "ema.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
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


def load_checkpoint(ck: Path, model, ema, opt, recipe=None) -> dict:
    model.load_state_dict(load_file(str(ck / "model.safetensors")))
    if recipe is not None and hasattr(recipe, "load_extra_state") and (ck / "extra.pt").exists():
        recipe.load_extra_state(torch.load(ck / "extra.pt", weights_only=True))
    if ema is not None:
        ema.load_state_dict(load_file(str(ck / "ema.safetensors")))
    opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
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
    """Materialise missing grads as zeros (same update rule on every rank) and average across ranks."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        if accelerator.num_processes > 1:
            p.grad = accelerator.reduce(p.grad, reduction="mean")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach().to(pe.dtype), 1 - decay)


def train(recipe, cfg: LoopConfig, progress: bool = True) -> Path:
    """Train `recipe` with `cfg`; resume from cfg.out's latest checkpoint; return the output folder."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType
    from tqdm import tqdm

    from fastlight.config import save_config

    check_loop_config(cfg)
    accelerator = Accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    out = Path(cfg.out)
    check_batch_divides(global_batch_size(recipe, cfg), world)
    if main and accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        print(f"warning: launched with {accelerator.distributed_type}, but this loop keeps a full replica per "
              f"process (explicit gradient all-reduce, no accelerator.prepare): parameters are not sharded")

    torch.manual_seed(cfg.seed)  # same initialisation on every rank
    model = recipe.trainable().to(accelerator.device)
    if getattr(cfg, "gradient_checkpointing", False) and not enable_gradient_checkpointing(model) and main:
        print(f"warning: gradient_checkpointing=true but {type(model).__name__} holds no model that supports it")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    ema = None
    if cfg.ema_decay > 0:
        ema = copy.deepcopy(model).requires_grad_(False)

    start, wall_before = 0, 0.0
    found = list_checkpoints(out)
    if found:
        state = json.loads((found[-1] / "state.json").read_text())
        check_resume_config(out, state, cfg)
        state = load_checkpoint(found[-1], model, ema, opt, recipe)
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
            logs = _one_step(recipe, cfg, model, params, opt, accelerator, step, rank, world)
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
                if main:
                    extra = recipe.extra_state() if hasattr(recipe, "extra_state") else None
                    save_checkpoint(out, done, model, ema, opt, cfg, wall_before + time.time() - t0, extra)
                    prune_checkpoints(out, cfg.keep_last)
                accelerator.wait_for_everyone()
    finally:
        if metrics_f is not None:
            metrics_f.close()
        if tb is not None:
            tb.close()
    final = out / "model"
    if main:
        recipe.run_info = {"steps": cfg.steps, "wall_time_s": round(wall_before + time.time() - t0, 2),
                           "num_processes": world}
        recipe.save_output(final, ema if ema is not None else model)
    accelerator.wait_for_everyone()
    return final


def _one_step(recipe, cfg, model, params, opt, accelerator, step, rank, world) -> dict:
    """One optimizer step = grad_accum micro-batches; returns the rank-averaged logs."""
    opt.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        index = step * cfg.grad_accum + micro
        torch.manual_seed(step_seed(cfg.seed, index, rank))
        batch = recipe.batch(index, rank, world)
        with accelerator.autocast():
            losses = recipe.step(batch)
        logged = torch.stack([v.detach().float().mean() for v in losses.values()])
        if world > 1:
            logged = accelerator.reduce(logged, reduction="mean")
        if not torch.isfinite(logged[list(losses).index("loss")]):
            raise FloatingPointError(f"non-finite loss at step {step + 1} (micro-batch {micro}); nothing was saved "
                                     f"for it: lower lr (now {cfg.lr}) and resume from the last checkpoint in {cfg.out}")
        (losses["loss"] / cfg.grad_accum).backward()
        for k, v in zip(losses, logged.tolist()):
            totals[k] = totals.get(k, 0.0) + v / cfg.grad_accum
    _average_grads(params, accelerator)
    if cfg.grad_clip > 0:
        totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
    opt.step()
    return totals
