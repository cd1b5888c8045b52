"""Checkpoints of the training loop: every optimised module, its optimizer, the EMA, the RNG and the step.

    checkpoints/step-XXXXXXXX/
        model.safetensors  optimizer.pt            the generator (the recipe's `trainable`) and its AdamW
        ema.safetensors                            the generator's EMA (when ema_decay > 0)
        NAME.safetensors   optimizer-NAME.pt       each further optimised module (critic, discriminator)
        extra.pt                                   a recipe's own non-module state (recipe.extra_state())
        state.json                                 step, steps, config hash, wall time, RNG states,
                                                   the sha256 of every other file (`files`)

Written atomically (`fastlight.fileio.atomic_dir`: a hidden temporary folder renamed into place)
by rank 0 only, with FULL tensors: a sharded run gathers them first (`full_state_dict`,
`full_optimizer_state`: collectives), so a checkpoint resumes sharded or not. `optimizer*.pt` keep
torch's own state-dict layout. state.json also records `steps`, for the resume check of a cosine
schedule (check_resume_config).

Resume (`read_latest`) takes the newest checkpoint that verifies: every file matches the sha256 in
its state.json and deserialises (safetensors, `torch.load(weights_only=True)`); a checkpoint from
before checksums is checked by deserialising alone. Each one skipped is said in one line. When
checkpoints exist and none verifies, resume refuses (CheckpointError) rather than start afresh:
a fresh start would silently throw away the run's progress and overwrite the evidence; moving
`checkpoints/` aside is the explicit way to start over.

The config hash is of what determines the result, not of where files live (`hashed_config`), so a
run folder that is moved or copied resumes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fastlight.errors import ConfigError, InputError
from fastlight.fileio import atomic_dir, atomic_write_json, atomic_write_text, sha256_file
from fastlight.train.sharding import is_dtensor

GENERATOR = "generator"
# may change on resume, same result (`steps` only where the lr does not depend on it: check_resume_config)
_NOT_HASHED = ("out", "steps", "gradient_checkpointing", "shard", "offload", "hooks")
# the loop's own string options are names, never paths (a folder called "constant" must not matter)
_NOT_PATHS = ("lr_schedule", "mixed_precision")
HASH_FORMAT = 2  # 2: paths hashed by location-free identity (hashed_config); absent: absolute paths as given
_WHOLE_FILE = 4 << 20  # inputs up to this size are hashed whole; larger ones by size, head and tail
_SAMPLE = 1 << 20


class CheckpointError(InputError):
    """No checkpoint of a run folder verifies (every one is truncated, changed or unreadable)."""


def _file_identity(path: Path, h) -> None:
    size = path.stat().st_size
    h.update(f"{size}:".encode())
    with open(path, "rb") as fh:
        if size <= _WHOLE_FILE:
            h.update(fh.read())
        else:
            h.update(fh.read(_SAMPLE))
            fh.seek(size - _SAMPLE)
            h.update(fh.read(_SAMPLE))


def input_identity(path: str | os.PathLike) -> str:
    """A content identity of an input file or folder that survives moving or copying it: sha256 of
    every regular file's relative name, size and bytes (files over 4 MiB: their first and last MiB,
    which cover a safetensors header and tensors at both ends). Hidden files are left out (a
    `.lock`, a stage's `.done.json` are not content)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        _file_identity(p, h)
    else:
        for f in sorted(q for q in p.rglob("*") if q.is_file() and not any(
                part.startswith(".") for part in q.relative_to(p).parts)):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            _file_identity(f, h)
    return "content sha256:" + h.hexdigest()[:16]


def _location_free(value: str, out: Path):
    """A path-valued config string as what it means, not where it lies.

    Inside the run folder: relative to it ("<out>/2_plan/plan.json"), so moving the folder keeps it.
    Outside, an existing file or folder (a teacher, a plan, shards; also a sibling stage's folder of
    a `fastlight run` pipeline, which moves with it): its content identity (`input_identity`), which
    follows the input wherever it is moved or copied and changes when the input does; hashing its
    bytes whole would cost seconds per GB at every start, a sampled identity costs milliseconds.
    Anything else (a preset name such as 'shapes-teacher', "") is hashed as written."""
    if not value:
        return value
    p = Path(value).expanduser().resolve()
    if p == out or out in p.parents:
        return "<out>/" + p.relative_to(out).as_posix()
    if p.exists() and p not in out.parents:  # a folder holding the run folder is no input ("."): as written
        return input_identity(p)
    return value


def hashed_config(cfg) -> dict:
    """The config fields that determine the result, paths made location-free (`_location_free`)."""
    out = Path(cfg.out).expanduser().resolve()
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_HASHED}
    return {k: _location_free(v, out) if isinstance(v, str) and k not in _NOT_PATHS else v
            for k, v in values.items()}


def _digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(cfg) -> str:
    return _digest(hashed_config(cfg))


def _legacy_hashed_config(cfg) -> dict:
    """The hashed fields as checkpoints before HASH_FORMAT 2 saw them (paths as given)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_HASHED}


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
        if t.device.type != t.device_mesh.device_type:  # a CPU-offloaded shard: gather on the mesh's device
            t = t.to(t.device_mesh.device_type)
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


def save_checkpoint(out: Path, step: int, parts: dict, ema, cfg, wall_time_s: float, extra: dict | None = None,
                    hashed: dict | None = None) -> Path:
    """Write checkpoints/step-N atomically (tmp folder, then rename); the caller keeps this to rank 0.
    parts: {name: (module or its full state dict, optimizer or its full state dict)}, the generator first;
    ema: the generator's EMA (module, state dict or None); extra: a recipe's own state (extra.pt);
    hashed: hashed_config(cfg), when the caller computed it once for the run."""
    final = checkpoint_dir(out, step)
    with atomic_dir(final) as tmp:  # hidden until renamed: list_checkpoints never sees a partial one
        for name, (module, opt) in parts.items():
            save_file(module if isinstance(module, dict) else _tensors(module), str(tmp / weights_file(name)))
            torch.save(opt if isinstance(opt, dict) else opt.state_dict(), tmp / optimizer_file(name))
        if ema is not None:
            save_file(ema if isinstance(ema, dict) else _tensors(ema), str(tmp / "ema.safetensors"))
        if extra is not None:
            torch.save(extra, tmp / "extra.pt")
        hashed = hashed_config(cfg) if hashed is None else hashed
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        state = {"step": step, "config_hash": _digest(hashed), "config": hashed, "hash_format": HASH_FORMAT,
                 "steps": cfg.steps, "wall_time_s": wall_time_s, "rng": rng_state(), "files": files}
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


def check_resume_config(out: Path, state: dict, cfg, hashed: dict | None = None) -> None:
    """Refuse to resume `out` with a config that would change the result: a hashed field differs, or
    `steps` differs under a cosine schedule after steps past the warm-up were taken (their learning
    rate depended on the old `steps`; during warm-up, or with a constant schedule, it does not).
    A checkpoint from before HASH_FORMAT 2 is compared with the paths as given (as it was hashed). A field the
    checkpoint's config lacks (added to the config class since) is no change at its default: a new option's default
    keeps the old behaviour."""
    if state.get("hash_format") == HASH_FORMAT:
        new = hashed_config(cfg) if hashed is None else hashed
    else:
        new = _legacy_hashed_config(cfg)
    if state.get("config_hash") != _digest(new):
        old = state.get("config", {})
        defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                      and not (k not in old and k in defaults and new.get(k) == defaults[k]))
        if diff or "config" not in state:  # no saved config: nothing tells an added field from a changed one
            what = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4]) + (" ..." if len(diff) > 4 else "")
            raise ConfigError(f"resume folder {out} was made with a different config ({what}); use a new --out")
    saved_steps = state.get("steps")  # absent in checkpoints written before it was saved
    if (saved_steps is not None and saved_steps != cfg.steps and cfg.lr_schedule == "cosine"
            and state.get("step", 0) > cfg.warmup_steps):
        raise ConfigError(f"resume folder {out} was made with steps={saved_steps} and a cosine lr_schedule, whose "
                          f"learning rate depends on steps; resume with steps={saved_steps}, or use a new --out "
                          f"(a constant lr_schedule may change steps on resume)")


@dataclass
class Loaded:
    """A checkpoint read into memory (the modules' weights are already in place): its state.json,
    every optimizer's state dict and the recipe's extra state (None: no extra.pt or not wanted)."""

    path: Path
    state: dict
    optimizers: dict = field(default_factory=dict)
    extra: dict | None = None


# what a truncated, changed or hostile file raises while deserialising (torch's zip reader: RuntimeError;
# weights_only refusing a pickle: UnpicklingError); anything else is a bug and shows
_UNREADABLE = (OSError, EOFError, ValueError, RuntimeError, KeyError, SafetensorError, pickle.UnpicklingError)


def checksum_problem(ck: Path, state: dict) -> str | None:
    """Why `ck`'s files do not match the sha256 its state.json records (None: they all do, or it
    records none: a checkpoint from before checksums)."""
    for name, digest in (state.get("files") or {}).items():
        f = ck / name
        if not f.is_file():
            return f"{name} is missing"
        if sha256_file(f) != digest:
            return f"{name} does not match its checksum (truncated or changed)"
    return None


def _read_state(ck: Path) -> dict:
    try:
        state = json.loads((ck / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"state.json is unreadable ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or "rng" not in state:
        raise CheckpointError("state.json lacks its step or RNG state")
    return state


def _load(ck: Path, name: str, fn):
    if not (ck / name).is_file():
        raise CheckpointError(f"{name} is missing")
    try:
        return fn(ck / name)
    except _UNREADABLE as e:
        first = (str(e).strip().splitlines() or [""])[0][:120]  # torch's messages run to many lines
        raise CheckpointError(f"{name} cannot be read ({type(e).__name__}{': ' + first if first else ''})") from None


def read_checkpoint(ck: Path, modules: dict, ema, optimizer_names, want_extra: bool, check=None) -> Loaded:
    """Verify `ck` (checksums, then deserialising every file) and load the modules' full weights (and
    the EMA's) in place, before any sharding; raises CheckpointError naming the first problem.
    check(state): called once the files verify, before any weight is loaded (the config check)."""
    state = _read_state(ck)
    problem = checksum_problem(ck, state)
    if problem:
        raise CheckpointError(problem)
    if check is not None:
        check(state)
    weights = {name: _load(ck, weights_file(name), lambda f: load_file(str(f))) for name in modules}
    ema_sd = _load(ck, "ema.safetensors", lambda f: load_file(str(f))) if ema is not None else None
    opts = {n: _load(ck, optimizer_file(n), lambda f: torch.load(f, weights_only=True)) for n in optimizer_names}
    extra = None
    if want_extra and (ck / "extra.pt").exists():
        extra = _load(ck, "extra.pt", lambda f: torch.load(f, weights_only=True))
    for name, module in modules.items():
        module.load_state_dict(weights.pop(name))
    if ema is not None:
        ema.load_state_dict(ema_sd)
    return Loaded(ck, state, opts, extra)


def read_latest(out: Path, modules: dict, ema, optimizer_names, want_extra: bool = False, check=None,
                say=print) -> Loaded | None:
    """The newest checkpoint of `out` that verifies, read (read_checkpoint); one line through `say`
    for each newer one skipped and why; None when there is none; CheckpointError when checkpoints
    exist and none verifies (module doc: no silent fresh start)."""
    found = list_checkpoints(out)
    skipped = []
    for ck in reversed(found):
        try:
            loaded = read_checkpoint(ck, modules, ema, optimizer_names, want_extra, check)
        except CheckpointError as e:
            skipped.append(f"{ck.name}: {e}")
            say(f"skipped checkpoint {ck}: {e}; trying an older one")
            continue
        return loaded
    if skipped:
        raise CheckpointError(f"no checkpoint in {Path(out) / 'checkpoints'} verifies ({'; '.join(skipped[:3])}"
                              f"{' ...' if len(skipped) > 3 else ''}); move that folder aside to start afresh, "
                              f"or use a new --out")
    return None


def load_optimizers(loaded: Loaded, optimizers: dict) -> None:
    """Every optimizer's state from a read checkpoint; a sharded optimizer gets its shards of the state."""
    for name, opt in optimizers.items():
        sd = loaded.optimizers.pop(name)
        params = [p for g in opt.param_groups for p in g["params"]]
        opt.load_state_dict(_shard_optimizer_state(sd, params) if any(is_dtensor(p) for p in params) else sd)


def load_state(loaded: Loaded, recipe=None) -> dict:
    """The recipe's own state (extra.pt) and the RNG states of a read checkpoint; returns state.json."""
    if recipe is not None and hasattr(recipe, "load_extra_state") and loaded.extra is not None:
        recipe.load_extra_state(loaded.extra)
    set_rng_state(loaded.state["rng"])
    return loaded.state


def _metric_step(line: str) -> int | None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec.get("step") if isinstance(rec, dict) and isinstance(rec.get("step"), int) else None


def trim_metrics(path: Path, step: int) -> None:
    """Before resuming from checkpoint `step`, keep only metric lines of steps up to it, so that the
    resumed run's lines follow without a repeated step. A line a kill cut short (not JSON) is dropped
    too. Rewritten atomically: a kill during the trim leaves the old file, never half of it."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if (s := _metric_step(ln)) is not None and s <= step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))
