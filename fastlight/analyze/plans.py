"""Pruning plans: which blocks (depth) or heads / FFN units (width) to remove, by PARAMETER ratio.

prune_ratio r means: remove (at least) the fraction r of the whole DiT's parameters
(`model.num_params()`, embeddings and head included), e.g. 0.3 keeps ~70% (FastLightGen's
sweet spot). `achieved_ratio` = removed / before, as built.

plan.json formats. This module owns them: `validate_plan` / `read_plan` are the only checker and
reader (`fastlight prune` reads plans with `read_plan(path, model)`):

  depth: {"type": "depth", "fingerprint": str, "family": "wan" | "hunyuan", "prune_ratio": r,
          "achieved_ratio": float, "drop_blocks": [global block ids], "keep_blocks": [...],
          "num_params_before": int, "num_params_after": int}
  width: {"type": "width", "fingerprint", "family", "prune_ratio", "achieved_ratio",
          "layers": {"<global block id>": {"keep_heads": [sorted head ids], "keep_ffn": [sorted unit ids]}},
          "num_params_before", "num_params_after"}
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from fastlight.analyze.io import atomic_write_json, check_fingerprint
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import model_fingerprint

PLAN_TYPES = ("depth", "width")


def _check_ratio(prune_ratio) -> float:
    if isinstance(prune_ratio, bool) or not isinstance(prune_ratio, (int, float)) or not 0 < prune_ratio < 1:
        raise ValueError(f"prune ratio must lie in (0, 1) (0.3 = remove 30% of the parameters, keep 70%), got {prune_ratio!r}")
    return float(prune_ratio)


# ---- depth ----------------------------------------------------------------------------------------
def depth_plan(importance_rows: list[dict], model: Denoiser, prune_ratio: float, keep_ends: bool = True,
               verbose: bool = True) -> dict:
    """Greedy depth plan: drop blocks from the least important up (ascending score; ascending
    `rank`-reversed order, which is the same for one-shot scores and the drop order for iterative
    rows) until the removed parameter fraction sum(params of dropped) / model.num_params() reaches
    `prune_ratio`. The first and last blocks are never dropped unless keep_ends=False. Blocks
    without a row are kept. Raises ValueError if the ratio is outside (0, 1) or unreachable."""
    prune_ratio = _check_ratio(prune_ratio)
    n = model.num_blocks
    infos = {b.index: b for b in model.blocks}
    for r in importance_rows:
        if not 0 <= r["index"] < n:
            raise ValueError(f"importance names block {r['index']} but the model has blocks 0..{n - 1}")
    ends = {0, n - 1} if keep_ends else set()
    # least important first: highest rank number (rank 0 = most important), then lowest score
    order = sorted(importance_rows, key=lambda r: (-r.get("rank", 0), r["score"], r["index"]))
    candidates = [r["index"] for r in order if r["index"] not in ends]
    total = model.num_params()
    target = prune_ratio * total
    drop, removed = [], 0
    for i in candidates:
        if removed >= target:
            break
        drop.append(i)
        removed += infos[i].num_params
    if removed < target:
        why = " (the first and last blocks are kept; pass keep_ends=False to allow them)" if keep_ends else ""
        raise ValueError(f"prune ratio {prune_ratio} is unreachable by dropping blocks: all {len(candidates)} candidate "
                         f"blocks hold only {removed / total:.1%} of the parameters{why}")
    drop_set = set(drop)
    after = model.num_params(drop_set)
    plan = {
        "type": "depth",
        "fingerprint": model_fingerprint(model),
        "family": model.family,
        "prune_ratio": prune_ratio,
        "achieved_ratio": (total - after) / total,
        "drop_blocks": sorted(drop_set),
        "keep_blocks": [i for i in range(n) if i not in drop_set],
        "num_params_before": total,
        "num_params_after": after,
    }
    if verbose:
        print(f"depth plan: drop {len(drop)} of {n} blocks {plan['drop_blocks']}: {plan['achieved_ratio']:.1%} of the "
              f"parameters removed (target {prune_ratio:.1%}), {after:,} of {total:,} kept")
    return plan


# ---- width ----------------------------------------------------------------------------------------
def _top(scores: torch.Tensor, keep: int) -> list[int]:
    """Ids of the `keep` largest scores (ties -> lower id), sorted ascending."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:keep])


def width_plan(taylor_scores: dict[int, dict[str, torch.Tensor]], model: Denoiser, prune_ratio: float,
               score: str = "in", prune_heads: bool = True, verbose: bool = True) -> dict:
    """Uniform width plan: the same number of FFN units (fraction f = k / ffn_dim) and of heads
    (floor(f * num_heads), at most num_heads - 1; none if prune_heads=False) is removed in every
    block, the least salient ones of each block; the smallest k whose removed parameter fraction
    reaches `prune_ratio` is chosen. At least 1 head and 1 unit stay in every block.

    score "in": the paper's row saliency (`heads` / `ffn` of taylor.py); "out": the consumer-side
    column saliency (`heads_out` / `ffn_out`).
    """
    from fastlight.analyze.taylor import width_layout

    prune_ratio = _check_ratio(prune_ratio)
    if score not in ("in", "out"):
        raise ValueError(f"score must be 'in' or 'out', got {score!r}")
    hk, fk = ("heads", "ffn") if score == "in" else ("heads_out", "ffn_out")
    n = model.num_blocks
    missing = [i for i in range(n) if i not in taylor_scores]
    if missing:
        raise ValueError(f"Taylor scores lack blocks {missing}; a width plan prunes every block (re-run fastlight analyze)")
    layouts = {i: width_layout(model, i) for i in range(n)}
    Hs, Ds = {L.num_heads for L in layouts.values()}, {L.ffn_dim for L in layouts.values()}
    if len(Hs) != 1 or len(Ds) != 1:
        raise ValueError(f"blocks differ in heads {sorted(Hs)} / FFN width {sorted(Ds)}; a uniform width plan needs equal widths")
    H, D = Hs.pop(), Ds.pop()
    for i in range(n):
        if taylor_scores[i][hk].numel() != H or taylor_scores[i][fk].numel() != D:
            raise ValueError(f"Taylor scores of block {i} do not match the model ({H} heads, {D} FFN units)")
    total = model.num_params()
    target = prune_ratio * total
    chosen = None
    for k in range(1, D):  # FFN units removed per block
        h = min(H - 1, math.floor(k / D * H + 1e-9)) if prune_heads else 0
        removed = sum(h * L.params_per_head + k * L.params_per_ffn_unit for L in layouts.values())
        if removed >= target:
            chosen = (k, h, removed)
            break
    if chosen is None:
        h = H - 1 if prune_heads else 0
        most = sum(h * L.params_per_head + (D - 1) * L.params_per_ffn_unit for L in layouts.values())
        raise ValueError(f"prune ratio {prune_ratio} is unreachable by width pruning: keeping 1 FFN unit"
                         f"{' and 1 head' if prune_heads else ''} per block removes only {most / total:.1%} of the parameters")
    k, h, removed = chosen
    layers = {str(i): {"keep_heads": _top(taylor_scores[i][hk], H - h), "keep_ffn": _top(taylor_scores[i][fk], D - k)}
              for i in range(n)}
    plan = {
        "type": "width",
        "fingerprint": model_fingerprint(model),
        "family": model.family,
        "prune_ratio": prune_ratio,
        "achieved_ratio": removed / total,
        "layers": layers,
        "num_params_before": total,
        "num_params_after": total - removed,
    }
    if verbose:
        print(f"width plan: per block keep {H - h}/{H} heads and {D - k}/{D} FFN units: {plan['achieved_ratio']:.1%} of "
              f"the parameters removed (target {prune_ratio:.1%}), {total - removed:,} of {total:,} kept")
    return plan


# ---- plan.json ------------------------------------------------------------------------------------
# The ONE reader / checker of the plan format (`fastlight/prune` executes plans through it).
FAMILIES = ("wan", "hunyuan")
_DIGITS = re.compile(r"[0-9]+")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _short(v) -> str:
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _int_list(v, where: str) -> list[int]:
    """`where` names the field, e.g. "plan p.json: 'drop_blocks'". Ids: integers >= 0, sorted, once each."""
    if not isinstance(v, list) or not all(_is_int(x) for x in v):
        raise ValueError(f"{where} must be a list of integer ids, got {_short(v)}")
    if any(x < 0 for x in v):
        raise ValueError(f"{where} has a negative id {min(v)}; ids count from 0")
    if len(set(v)) != len(v):
        dup = sorted({x for x in v if v.count(x) > 1})
        raise ValueError(f"{where} lists ids {dup} more than once; list each id once")
    if v != sorted(v):
        raise ValueError(f"{where} must be sorted ascending, got {_short(v)}")
    return v


def _fraction(plan: dict, key: str, where: str, low_open: bool) -> float:
    v = plan[key]
    span = "(0, 1)" if low_open else "[0, 1)"
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"{where}: '{key}' must be a number in {span} (0.3 = remove 30% of the parameters), got {v!r}")
    if not (0 < v < 1 if low_open else 0 <= v < 1):
        what = "a prune ratio" if low_open else "a fraction of parameters removed"
        raise ValueError(f"{where}: '{key}' = {v} is not {what} in {span} (0.3 = remove 30% of the parameters, keep 70%)")
    return float(v)


def _count(plan: dict, key: str, where: str) -> int:
    v = plan[key]
    if not _is_int(v) or v <= 0:
        raise ValueError(f"{where}: '{key}' must be a positive integer (a parameter count), got {v!r}")
    return v


def _block_key(key, where: str) -> int:
    if _is_int(key) and key >= 0:
        return key
    if isinstance(key, str) and _DIGITS.fullmatch(key) and str(int(key)) == key:
        return int(key)
    raise ValueError(f"{where}: 'layers' key {key!r} is not a block id (a block index like \"0\")")


def validate_plan(plan: dict, model: Denoiser | None = None, where: str = "plan") -> dict:
    """Check a plan dict (format in the module docstring); every failure is a one-line ValueError
    that names the field. Without `model`: structure, types, ranges, duplicates. With `model` (the
    one it will be applied to): also fingerprint, family, num_params_before and every block / head /
    unit id in range, and a depth plan must assign each of the model's blocks exactly once."""
    if not isinstance(plan, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(plan).__name__}; re-run fastlight plan")
    if plan.get("type") not in PLAN_TYPES:
        raise ValueError(f"{where}: 'type' must be one of {PLAN_TYPES}, got {plan.get('type')!r}")
    common = ("fingerprint", "family", "prune_ratio", "achieved_ratio", "num_params_before", "num_params_after")
    need = common + (("drop_blocks", "keep_blocks") if plan["type"] == "depth" else ("layers",))
    missing = [k for k in need if k not in plan]
    if missing:
        raise ValueError(f"{where} lacks {missing}; re-run fastlight plan")
    if not isinstance(plan["fingerprint"], str) or not plan["fingerprint"]:
        raise ValueError(f"{where}: 'fingerprint' must be a non-empty string (the model_fingerprint of the model the "
                         f"plan was made for), got {plan['fingerprint']!r}; re-run fastlight plan")
    if plan["family"] not in FAMILIES:
        raise ValueError(f"{where}: 'family' must be one of {list(FAMILIES)}, got {plan['family']!r}")
    _fraction(plan, "prune_ratio", where, low_open=True)
    _fraction(plan, "achieved_ratio", where, low_open=False)
    before = _count(plan, "num_params_before", where)
    after = _count(plan, "num_params_after", where)
    if after > before:
        raise ValueError(f"{where}: 'num_params_after' {after} exceeds 'num_params_before' {before}; re-run fastlight plan")
    n = None
    if model is not None:
        check_fingerprint(plan, model, where, "re-run fastlight analyze and fastlight plan on this model", made="made for")
        if plan["family"] != model.family:
            raise ValueError(f"{where}: 'family' is for a {plan['family']} model but this model is {model.family}; "
                             "make the plan on this model")
        total = model.num_params()
        if before != total:
            raise ValueError(f"{where}: 'num_params_before' says the model has {before} parameters but it has {total}; "
                             "re-run fastlight plan on this model")
        n = model.num_blocks
    if plan["type"] == "depth":
        drop = _int_list(plan["drop_blocks"], f"{where}: 'drop_blocks'")
        keep = _int_list(plan["keep_blocks"], f"{where}: 'keep_blocks'")
        both = sorted(set(drop) & set(keep))
        if both:
            raise ValueError(f"{where}: blocks {both} are in both 'keep_blocks' and 'drop_blocks'; list each block in one")
        if not keep:
            raise ValueError(f"{where}: 'keep_blocks' is empty: the plan drops every block; keep at least one")
        if n is not None:
            for key, ids in (("drop_blocks", drop), ("keep_blocks", keep)):
                bad = [i for i in ids if i >= n]
                if bad:
                    raise ValueError(f"{where}: '{key}' names block {bad[0]} but the model has blocks 0..{n - 1}")
        m = len(drop) + len(keep) if n is None else n
        unassigned = sorted(set(range(m)) - set(drop) - set(keep))
        if unassigned or max(drop + keep) >= m:
            raise ValueError(f"{where}: 'drop_blocks' + 'keep_blocks' must be the blocks 0..{m - 1} exactly "
                             f"(unassigned: {unassigned}, out of range: {[i for i in drop + keep if i >= m]})")
    else:
        layers = plan["layers"]
        if not isinstance(layers, dict) or not layers:
            raise ValueError(f"{where}: 'layers' must be a non-empty object "
                             '{"<block id>": {"keep_heads": [...], "keep_ffn": [...]}}')
        from fastlight.analyze.taylor import width_layout

        seen = set()
        for key, spec in layers.items():
            i = _block_key(key, where)
            if i in seen:
                raise ValueError(f"{where}: 'layers' names block {i} twice")
            seen.add(i)
            if n is not None and i >= n:
                raise ValueError(f"{where}: 'layers' names block {i} but the model has blocks 0..{n - 1}")
            if not isinstance(spec, dict) or "keep_heads" not in spec or "keep_ffn" not in spec:
                raise ValueError(f"{where}: layer {i} needs keep_heads and keep_ffn (lists of kept ids)")
            unknown = sorted(set(spec) - {"keep_heads", "keep_ffn"})
            if unknown:
                raise ValueError(f"{where}: layer {i} has unknown keys {unknown} (expected 'keep_heads', 'keep_ffn')")
            heads = _int_list(spec["keep_heads"], f"{where}: layer {i} 'keep_heads'")
            ffn = _int_list(spec["keep_ffn"], f"{where}: layer {i} 'keep_ffn'")
            if not heads or not ffn:
                raise ValueError(f"{where}: layer {i} must keep at least 1 head and 1 FFN unit "
                                 "(to remove a whole block use a depth plan)")
            if model is not None:
                L = width_layout(model, i)
                if heads[-1] >= L.num_heads:
                    raise ValueError(f"{where}: layer {i} keeps head {heads[-1]} but the block has heads 0..{L.num_heads - 1}")
                if ffn[-1] >= L.ffn_dim:
                    raise ValueError(f"{where}: layer {i} keeps FFN unit {ffn[-1]} but the block has units 0..{L.ffn_dim - 1}")
    return plan


def write_plan(path: str | Path, plan: dict) -> Path:
    """Validate (structure only) and write plan.json atomically."""
    validate_plan(plan, where=f"plan {path}")
    return atomic_write_json(path, plan)


def read_plan(path: str | Path, model: Denoiser | None = None) -> dict:
    """Read and validate plan.json (see `validate_plan`; with `model`, also against that model).
    A missing file raises FileNotFoundError, anything else wrong a one-line ValueError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"plan file {path} does not exist; make one with fastlight plan")
    if path.is_dir():
        raise ValueError(f"plan {path} is a folder; pass the plan JSON file (e.g. {path / 'plan.json'})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"plan {path} is not valid JSON ({str(e).splitlines()[0]}); re-run fastlight plan") from None
    return validate_plan(data, model, where=f"plan {path}")


def plan_command(importance_path: str, model_path: str, prune_ratio: float, out: str, kind: str = "depth",
                 keep_ends: bool = True, reference: str | None = None, score: str = "in",
                 prune_heads: bool = False) -> dict:
    """`fastlight plan IMPORTANCE --model MODEL --ratio R --out plan.json [--kind depth|width]`.

    Width plans keep every head unless `prune_heads` (the stock diffusers classes tie the head
    count to the residual width, so `fastlight prune` exports FFN-unit pruning only).

    depth: IMPORTANCE = importance.json (or importance_metric.json) from `fastlight analyze`;
    `reference` None = its primary rows ("blocks"), "self" = the data-free rows, "iterative" = the
    greedy drop order. width: IMPORTANCE = taylor.json. `out`: a .json path (a folder gets plan.json).
    """
    from fastlight.models.load import load_denoiser
    from fastlight.models.load import resolve_model_path

    if kind not in PLAN_TYPES:
        raise ValueError(f"--kind must be one of {PLAN_TYPES}, got {kind!r}")
    _check_ratio(prune_ratio)
    model = load_denoiser(resolve_model_path(model_path)).eval()
    if kind == "depth":
        from fastlight.analyze.importance import importance_rows, read_importance

        rows = importance_rows(read_importance(importance_path, model), reference)
        plan = depth_plan(rows, model, prune_ratio, keep_ends)
    else:
        from fastlight.analyze.taylor import read_taylor

        plan = width_plan(read_taylor(importance_path, model), model, prune_ratio, score=score, prune_heads=prune_heads)
    out_path = Path(out)
    if out_path.is_dir() or out_path.suffix != ".json":
        out_path = out_path / "plan.json"
    write_plan(out_path, plan)
    print(f"plan written to {out_path}")
    return plan
