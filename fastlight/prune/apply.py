"""Apply a plan to a model and write the pruned model + manifest.json (the component of `fastlight prune`).

    prune_model("shapes-teacher", "runs/analyze/plan_depth.json", "runs/prune/depth30")

The output folder is a stock diffusers model folder (`from_pretrained` loads it) written
by `Denoiser.save`, plus `manifest.json` describing the surgery and `plan.json`, the plan it
was made with (in the source model's numbering; `analyze.plans.model_plan`). It is written to a
temporary sibling folder first and renamed into place, so a failure leaves no
half-written output.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from fastlight.analyze.plans import PLAN_FILE, read_plan
from fastlight.errors import InputError, PlanError, check_dir_creatable, make_parent_dir
from fastlight.models.load import load_denoiser, model_fingerprint
from fastlight.models.load import resolve_model_path
from fastlight.prune.surgery import depth_mapping, prune_depth, prune_width, wan_ffn_keep

# source meta that describes the source model's measured behaviour, not the pruned one's
STALE_META = ("quality",)


def _check_out_dir(out: Path, overwrite: bool, source: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; pass a folder path (absent or empty)")
    check_dir_creatable(out, "--out")
    src, dst = source.resolve(), out.resolve()
    if src == dst or dst in src.parents:
        raise InputError(f"output folder {out} is (or contains) the source model {source}; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"output folder {out} is not empty; choose another folder or pass overwrite=True (--overwrite)")


def _write_atomically(out: Path, write) -> None:
    """Call write(tmp_folder), then move tmp_folder to `out` (replacing it)."""
    make_parent_dir(out, "--out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            try:
                tmp.rename(out)
            except BaseException:
                old.rename(out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prune_model(model_path, plan_path, out_dir, overwrite: bool = False, device: str = "cpu") -> Path:
    """Prune `model_path` (a folder or preset name) with the plan JSON at `plan_path` into
    `out_dir`; returns `out_dir`, whose manifest.json describes the surgery. Bad input raises a
    one-line ValueError (ModelError for a bad model folder, FileNotFoundError for a missing plan)."""
    out = Path(out_dir)
    where = f"plan {plan_path}"
    # the file and its structure first (cheap), the checks against the model once it is loaded;
    # both by the plan format's one owner, fastlight.analyze.plans
    source = resolve_model_path(str(model_path))
    _check_out_dir(out, overwrite, Path(source))  # an unusable --out first: it is the user's to fix either way
    plan = read_plan(plan_path)
    den = load_denoiser(source, device)
    plan.check(den, where)
    fingerprint = model_fingerprint(den)
    kind = plan.type
    n = den.num_blocks
    before = den.num_params()

    if kind == "depth":
        drop = list(plan.drop_blocks)
        _, changes = depth_mapping(den, drop)
        pruned = prune_depth(den, drop)
        config_changes = {key: {"from": a, "to": b} for key, (a, b) in changes.items() if a != b}
        width = None
    else:
        drop = []
        keep_ffn, k = wan_ffn_keep(den, plan["layers"])
        pruned = prune_width(den, plan["layers"])
        config_changes = {"ffn_dim": {"from": den.model.config.ffn_dim, "to": k}} if k != den.model.config.ffn_dim else {}
        width = {
            "heads_kept_per_block": den.model.config.num_attention_heads,
            "ffn_units_kept_per_block": k,
            "keep_ffn": {str(b): units for b, units in keep_ffn.items()},
        }
    after = pruned.num_params()
    if plan.num_params_after != after:
        raise PlanError(
            f"{where}: 'num_params_after' says {plan.num_params_after} parameters remain but the pruned model has "
            f"{after}; the plan's parameter accounting disagrees with the surgery (re-run fastlight plan)"
        )

    manifest = {
        "source": str(model_path),
        "source_fingerprint": fingerprint,
        "plan": str(plan_path),
        "plan_type": kind,
        "family": den.family,
        "kept_blocks": [i for i in range(n) if i not in set(drop)],
        "dropped_blocks": drop,
        "prune_ratio": plan.prune_ratio,
        "achieved_ratio": 1.0 - after / before,
        "plan_achieved_ratio": plan.achieved_ratio,
        "num_params_before": before,
        "num_params_after": after,
        "config_changes": config_changes,
    }
    if width is not None:
        manifest["width"] = width

    for key in STALE_META:
        if key in pruned.meta:
            pruned.meta[f"source_{key}"] = pruned.meta.pop(key)
    meta = {"pruned_from": str(model_path), "source_fingerprint": fingerprint, "plan_type": kind}

    def write(folder: Path) -> None:
        pruned.save(folder, meta)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        (folder / PLAN_FILE).write_text(json.dumps(plan.to_json(), indent=2))

    _write_atomically(out, write)
    return out
