"""Checkpoints of the training loop: every optimised module, its optimizer, the EMA, the RNG and the step.

    checkpoints/step-XXXXXXXX/
        model.safetensors  optimizer.pt            the generator (the recipe's `trainable`) and its AdamW
        ema.safetensors                            the generator's EMA (when ema_decay > 0)
        NAME.safetensors   optimizer-NAME.pt       each further optimised module (critic, discriminator)
        extra.pt                                   a recipe's own non-module state (recipe.extra_state())
        state.json                                 step, steps, config hash, wall time, RNG states

Written atomically (`fastlight.fileio.atomic_dir`: a hidden temporary folder renamed into place)
by rank 0 only, with FULL tensors: a sharded run gathers them first (`full_state_dict`,
`full_optimizer_state`: collectives), so a checkpoint resumes sharded or not. `optimizer*.pt` keep
torch's own state-dict layout. state.json also records `steps`, for the resume check of a cosine
schedule (check_resume_config).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fastlight.errors import ConfigError
from fastlight.fileio import atomic_dir, atomic_write_json
from fastlight.train.sharding import is_dtensor

GENERATOR = "generator"
# may change on resume, same result (`steps` only where the lr does not depend on it: check_resume_config)
_NOT_HASHED = ("out", "steps", "gradient_checkpointing", "shard", "hooks")


def hashed_config(cfg) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_HASHED}


def config_hash(cfg) -> str:
    return hashlib.sha256(json.dumps(hashed_config(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_dir(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (those renamed into place), oldest first."""
    root = Path(out) / "checkpoints"
    if not root.exists():
        return []
    done = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("step-") and (d / "state.json").exists()]
    return sorted(done, key=lambda d: int(d.name[5:]))


def weights_file(name: str) -> str:
    return "model.safetensors" if name == GENERATOR else f"{name}.safetensors"


def optimizer_file(name: str) -> str:
    return "optimizer.pt" if name == GENERATOR else f"optimizer-{name}.pt"


def _full(t: torch.Tensor, keep: bool):
    """A full CPU copy of `t` (a sharded DTensor is all-gathered: every process must call this in
    the same order); None where not `keep`."""
    if is_dtensor(t):
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
    state = {i: {k: _full(v, keep) if isinstance(v, torch.Tensor) and is_dtensor(v) else v for k, v in st.items()}
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
                        if is_dtensor(p) and isinstance(v, torch.Tensor) and v.shape == p.shape else v)
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


def _tensors(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(out: Path, step: int, parts: dict, ema, cfg, wall_time_s: float, extra: dict | None = None) -> Path:
    """Write checkpoints/step-N atomically (tmp folder, then rename); the caller keeps this to rank 0.
    parts: {name: (module or its full state dict, optimizer or its full state dict)}, the generator first;
    ema: the generator's EMA (module, state dict or None); extra: a recipe's own state (extra.pt)."""
    final = checkpoint_dir(out, step)
    with atomic_dir(final) as tmp:  # hidden until renamed: list_checkpoints never sees a partial one
        for name, (module, opt) in parts.items():
            save_file(module if isinstance(module, dict) else _tensors(module), str(tmp / weights_file(name)))
            torch.save(opt if isinstance(opt, dict) else opt.state_dict(), tmp / optimizer_file(name))
        if ema is not None:
            save_file(ema if isinstance(ema, dict) else _tensors(ema), str(tmp / "ema.safetensors"))
        if extra is not None:
            torch.save(extra, tmp / "extra.pt")
        state = {"step": step, "config_hash": config_hash(cfg), "config": hashed_config(cfg),
                 "steps": cfg.steps, "wall_time_s": wall_time_s, "rng": rng_state()}
        atomic_write_json(tmp / "state.json", state, indent=None)
    return final


def prune_checkpoints(out: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` complete checkpoints; drop the older ones and any hidden partial
    folder a killed run left behind (atomic_dir's `.step-N.PID.tmp` / `.old`)."""
    for d in list_checkpoints(out)[:-keep_last]:
        shutil.rmtree(d)
    for d in (Path(out) / "checkpoints").glob(".step-*"):
        if d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


def check_resume_config(out: Path, state: dict, cfg) -> None:
    """Refuse to resume `out` with a config that would change the result: a hashed field differs, or
    `steps` differs under a cosine schedule after steps past the warm-up were taken (their learning
    rate depended on the old `steps`; during warm-up, or with a constant schedule, it does not)."""
    if state.get("config_hash") != config_hash(cfg):
        old, new = state.get("config", {}), hashed_config(cfg)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        what = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4]) + (" ..." if len(diff) > 4 else "")
        raise ConfigError(f"resume folder {out} was made with a different config ({what}); use a new --out")
    saved_steps = state.get("steps")  # absent in checkpoints written before it was saved
    if (saved_steps is not None and saved_steps != cfg.steps and cfg.lr_schedule == "cosine"
            and state.get("step", 0) > cfg.warmup_steps):
        raise ConfigError(f"resume folder {out} was made with steps={saved_steps} and a cosine lr_schedule, whose "
                          f"learning rate depends on steps; resume with steps={saved_steps}, or use a new --out "
                          f"(a constant lr_schedule may change steps on resume)")


def load_weights(ck: Path, modules: dict, ema) -> None:
    """Full weights of every module (and the EMA) from checkpoint `ck` (before any sharding)."""
    for name, module in modules.items():
        module.load_state_dict(load_file(str(ck / weights_file(name))))
    if ema is not None:
        ema.load_state_dict(load_file(str(ck / "ema.safetensors")))


def load_optimizers(ck: Path, optimizers: dict) -> None:
    """Every optimizer's state from `ck`; a sharded optimizer gets its shards of the state."""
    for name, opt in optimizers.items():
        sd = torch.load(ck / optimizer_file(name), weights_only=True)
        params = [p for g in opt.param_groups for p in g["params"]]
        opt.load_state_dict(_shard_optimizer_state(sd, params) if any(is_dtensor(p) for p in params) else sd)


def load_state(ck: Path, recipe=None) -> dict:
    """The recipe's own state (extra.pt) and the RNG states of `ck`; returns state.json."""
    if recipe is not None and hasattr(recipe, "load_extra_state") and (ck / "extra.pt").exists():
        recipe.load_extra_state(torch.load(ck / "extra.pt", weights_only=True))
    state = json.loads((ck / "state.json").read_text())
    set_rng_state(state["rng"])
    return state


def trim_metrics(path: Path, step: int) -> None:
    """After a kill, drop metric lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    path.write_text("".join(ln + "\n" for ln in keep))
