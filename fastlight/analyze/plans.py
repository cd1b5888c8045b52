"""Pruning plans: which blocks (depth) or FFN units / heads (width) to remove, by PARAMETER ratio.

    plan = depth_plan(importance_rows, model, prune_ratio=0.3)    # a Plan (typed, read-only)
    write_plan("runs/plan.json", plan)                           # plan.json, atomically
    plan = read_plan("runs/plan.json", model)                    # refused unless `model` has the plan's architecture
    plan.drop_blocks, plan.keep_blocks, plan.layers[3].keep_ffn  # typed fields
    plan["drop_blocks"]                                          # ...or the plan.json document (a Mapping)

prune_ratio r means: remove (at least) the fraction r of the whole DiT's parameters
(`model.num_params()`, embeddings and head included), e.g. 0.3 keeps ~70% (FastLightGen's
sweet spot). `achieved_ratio` = removed / before, as built.

Numbering. Every id in a plan is in the SOURCE model's numbering: the model the plan was made on,
whose architecture the plan carries (the teacher, or a Stage II model trained from it: Stage II
changes the weights, not the layout). Block ids are global block indices `BlockInfo.index`
(execution order 0..num_blocks-1; HunyuanVideo: the double-stream blocks first, then the
single-stream ones); head and FFN-unit ids are the rows of that source block. A pruned model
(`fastlight prune`, an icmd / align student) renumbers its blocks 0..k-1; its plan.json is the plan
it was made WITH, so it validates against its source's architecture, not its own.

Architecture, not weights. A plan is tied to `models.load.architecture_fingerprint` (class, config,
block layout, parameter names and shapes), so a plan made on the teacher validates against the
Stage II model and is refused, in one line naming both architectures, for any other layout.
One plan.json per model folder: `model_plan(folder)` reads the plan a model folder carries.

plan.json (format 2). This module owns it: `Plan.from_json` / `Plan.check` (via `validate_plan`,
`read_plan`) are its only checker and reader:

  common: {"format": 2, "type": "depth" | "width", "fingerprint": architecture fingerprint,
           "architecture": {"class", "config", "blocks": [kind per block]}, "family": "wan" | "hunyuan",
           "prune_ratio": r, "achieved_ratio": float, "num_params_before": int, "num_params_after": int}
  depth:  + {"drop_blocks": [block ids], "keep_blocks": [block ids]}   (together: 0..num_blocks-1 once each)
  width:  + {"layers": {"<block id>": {"keep_heads": [sorted head ids], "keep_ffn": [sorted unit ids]}}}

Files without "format" (format 1, before architecture fingerprints) carry the source's WEIGHT
fingerprint (`model_fingerprint`) as "fingerprint"; they are still read and checked against it.
"""
from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from fastlight.analyze.importance import importance_rows, read_importance
from fastlight.analyze.io import atomic_write_json
from fastlight.analyze.taylor import read_taylor, width_layout
from fastlight.errors import MissingFileError, PathError, PlanError, check_dir_creatable
from fastlight.fileio import read_json_object
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import (architecture, architecture_fingerprint, load_denoiser, model_fingerprint,
                                   resolve_model_path)

PLAN_TYPES = ("depth", "width")
PLAN_FILE = "plan.json"
PLAN_FORMAT = 2
FAMILIES = ("wan", "hunyuan")
COMMON_KEYS = ("fingerprint", "family", "prune_ratio", "achieved_ratio", "num_params_before", "num_params_after")


@dataclass(frozen=True)
class WidthKeep:
    """What a width plan keeps of one block: head ids and FFN unit ids (sorted, source numbering)."""

    keep_heads: tuple[int, ...]
    keep_ffn: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Plan(Mapping):
    """A pruning plan (module docstring). Read-only; as a Mapping it is its plan.json document, so
    `plan["drop_blocks"]` is a list and `plan == json.load(file)` compares documents."""

    type: str  # "depth" | "width"
    fingerprint: str  # architecture_fingerprint of the source model (format 1: its weight fingerprint)
    architecture: dict | None  # models.load.architecture of the source model (None in format 1)
    family: str
    prune_ratio: float
    achieved_ratio: float
    num_params_before: int
    num_params_after: int
    drop_blocks: tuple[int, ...] = ()  # depth
    keep_blocks: tuple[int, ...] = ()  # depth
    layers: Mapping[int, WidthKeep] = field(default_factory=dict)  # width: {block id: kept heads / units}
    format: int = PLAN_FORMAT

    # ---- the plan.json document -------------------------------------------------------------------
    @cached_property
    def _doc(self) -> dict:
        doc: dict = {"format": self.format} if self.format >= 2 else {}
        doc["type"] = self.type
        doc["fingerprint"] = self.fingerprint
        if self.architecture is not None:
            doc["architecture"] = self.architecture
        doc.update(family=self.family, prune_ratio=self.prune_ratio, achieved_ratio=self.achieved_ratio)
        if self.type == "depth":
            doc.update(drop_blocks=list(self.drop_blocks), keep_blocks=list(self.keep_blocks))
        else:
            doc["layers"] = {str(i): {"keep_heads": list(k.keep_heads), "keep_ffn": list(k.keep_ffn)}
                             for i, k in sorted(self.layers.items())}
        doc.update(num_params_before=self.num_params_before, num_params_after=self.num_params_after)
        return doc

    def to_json(self) -> dict:
        """The plan.json document (a fresh copy)."""
        return copy.deepcopy(self._doc)

    def __getitem__(self, key: str):
        return self._doc[key]

    def __iter__(self):
        return iter(self._doc)

    def __len__(self) -> int:
        return len(self._doc)

    # ---- reading and checking -------------------------------------------------------------------
    @classmethod
    def from_json(cls, doc, where: str = "plan") -> "Plan":
        """A plan.json document (or a Plan) -> Plan, checked for structure, types, ranges and
        duplicates; every failure is a one-line PlanError naming the field."""
        return _parse(doc, where)

    def check(self, model: Denoiser, where: str = "plan") -> "Plan":
        """Refuse (PlanError, one line) a plan that does not fit `model`: another architecture
        (naming both), another family or parameter count, or ids out of the model's range."""
        _check_against(self, model, where)
        return self


def _check_ratio(prune_ratio) -> float:
    if isinstance(prune_ratio, bool) or not isinstance(prune_ratio, (int, float)) or not 0 < prune_ratio < 1:
        raise PlanError(f"prune ratio must lie in (0, 1) (0.3 = remove 30% of the parameters, keep 70%), got {prune_ratio!r}")
    return float(prune_ratio)


def _source_fields(model: Denoiser) -> dict:
    return {"fingerprint": architecture_fingerprint(model), "architecture": architecture(model), "family": model.family}


# ---- depth ----------------------------------------------------------------------------------------
def depth_plan(importance_rows: list[dict], model: Denoiser, prune_ratio: float, keep_ends: bool = True,
               verbose: bool = True) -> Plan:
    """Greedy depth plan: drop blocks from the least important up (ascending score; ascending
    `rank`-reversed order, which is the same for one-shot scores and the drop order for iterative
    rows) until the removed parameter fraction sum(params of dropped) / model.num_params() reaches
    `prune_ratio`. The first and last blocks are never dropped unless keep_ends=False. Blocks
    without a row are kept. Raises PlanError if the ratio is outside (0, 1) or unreachable."""
    prune_ratio = _check_ratio(prune_ratio)
    n = model.num_blocks
    infos = {b.index: b for b in model.blocks}
    for r in importance_rows:
        if not 0 <= r["index"] < n:
            raise PlanError(f"importance names block {r['index']} but the model has blocks 0..{n - 1}")
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
        raise PlanError(f"prune ratio {prune_ratio} is unreachable by dropping blocks: all {len(candidates)} candidate "
                        f"blocks hold only {removed / total:.1%} of the parameters{why}")
    drop_set = set(drop)
    after = model.num_params(drop_set)
    plan = Plan(type="depth", **_source_fields(model), prune_ratio=prune_ratio, achieved_ratio=(total - after) / total,
                num_params_before=total, num_params_after=after, drop_blocks=tuple(sorted(drop_set)),
                keep_blocks=tuple(i for i in range(n) if i not in drop_set))
    if verbose:
        print(f"depth plan: drop {len(drop)} of {n} blocks {list(plan.drop_blocks)}: {plan.achieved_ratio:.1%} of the "
              f"parameters removed (target {prune_ratio:.1%}), {after:,} of {total:,} kept")
    return plan


# ---- width ----------------------------------------------------------------------------------------
def _top(scores: torch.Tensor, keep: int) -> tuple[int, ...]:
    """Ids of the `keep` largest scores (ties -> lower id), sorted ascending."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return tuple(sorted(order[:keep]))


def width_plan(taylor_scores: dict[int, dict[str, torch.Tensor]], model: Denoiser, prune_ratio: float,
               score: str = "in", prune_heads: bool = True, verbose: bool = True) -> Plan:
    """Uniform width plan: the same number of FFN units (fraction f = k / ffn_dim) and of heads
    (floor(f * num_heads), at most num_heads - 1; none if prune_heads=False) is removed in every
    block, the least salient ones of each block; the smallest k whose removed parameter fraction
    reaches `prune_ratio` is chosen. At least 1 head and 1 unit stay in every block.

    score "in": the paper's row saliency (`heads` / `ffn` of taylor.py); "out": the consumer-side
    column saliency (`heads_out` / `ffn_out`).
    """
    prune_ratio = _check_ratio(prune_ratio)
    if score not in ("in", "out"):
        raise PlanError(f"score must be 'in' or 'out', got {score!r}")
    hk, fk = ("heads", "ffn") if score == "in" else ("heads_out", "ffn_out")
    n = model.num_blocks
    missing = [i for i in range(n) if i not in taylor_scores]
    if missing:
        raise PlanError(f"Taylor scores lack blocks {missing}; a width plan prunes every block (re-run fastlight analyze)")
    layouts = {i: width_layout(model, i) for i in range(n)}
    Hs, Ds = {L.num_heads for L in layouts.values()}, {L.ffn_dim for L in layouts.values()}
    if len(Hs) != 1 or len(Ds) != 1:
        raise PlanError(f"blocks differ in heads {sorted(Hs)} / FFN width {sorted(Ds)}; a uniform width plan needs equal widths")
    H, D = Hs.pop(), Ds.pop()
    for i in range(n):
        if taylor_scores[i][hk].numel() != H or taylor_scores[i][fk].numel() != D:
            raise PlanError(f"Taylor scores of block {i} do not match the model ({H} heads, {D} FFN units)")
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
        raise PlanError(f"prune ratio {prune_ratio} is unreachable by width pruning: keeping 1 FFN unit"
                        f"{' and 1 head' if prune_heads else ''} per block removes only {most / total:.1%} of the parameters")
    k, h, removed = chosen
    layers = {i: WidthKeep(_top(taylor_scores[i][hk], H - h), _top(taylor_scores[i][fk], D - k)) for i in range(n)}
    plan = Plan(type="width", **_source_fields(model), prune_ratio=prune_ratio, achieved_ratio=removed / total,
                num_params_before=total, num_params_after=total - removed, layers=layers)
    if verbose:
        print(f"width plan: per block keep {H - h}/{H} heads and {D - k}/{D} FFN units: {plan.achieved_ratio:.1%} of "
              f"the parameters removed (target {prune_ratio:.1%}), {total - removed:,} of {total:,} kept")
    return plan


# ---- checks ---------------------------------------------------------------------------------------
_DIGITS = re.compile(r"[0-9]+")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _short(v) -> str:
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _int_list(v, where: str) -> tuple[int, ...]:
    """`where` names the field, e.g. "plan p.json: 'drop_blocks'". Ids: integers >= 0, sorted, once each."""
    if not isinstance(v, (list, tuple)) or not all(_is_int(x) for x in v):
        raise PlanError(f"{where} must be a list of integer ids, got {_short(v)}")
    v = list(v)
    if any(x < 0 for x in v):
        raise PlanError(f"{where} has a negative id {min(v)}; ids count from 0")
    if len(set(v)) != len(v):
        dup = sorted({x for x in v if v.count(x) > 1})
        raise PlanError(f"{where} lists ids {dup} more than once; list each id once")
    if v != sorted(v):
        raise PlanError(f"{where} must be sorted ascending, got {_short(v)}")
    return tuple(v)


def _fraction(doc: Mapping, key: str, where: str, low_open: bool) -> float:
    v = doc[key]
    span = "(0, 1)" if low_open else "[0, 1)"
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise PlanError(f"{where}: '{key}' must be a number in {span} (0.3 = remove 30% of the parameters), got {v!r}")
    if not (0 < v < 1 if low_open else 0 <= v < 1):
        what = "a prune ratio" if low_open else "a fraction of parameters removed"
        raise PlanError(f"{where}: '{key}' = {v} is not {what} in {span} (0.3 = remove 30% of the parameters, keep 70%)")
    return float(v)


def _count(doc: Mapping, key: str, where: str) -> int:
    v = doc[key]
    if not _is_int(v) or v <= 0:
        raise PlanError(f"{where}: '{key}' must be a positive integer (a parameter count), got {v!r}")
    return v


def _block_key(key, where: str) -> int:
    if _is_int(key) and key >= 0:
        return key
    if isinstance(key, str) and _DIGITS.fullmatch(key) and str(int(key)) == key:
        return int(key)
    raise PlanError(f"{where}: 'layers' key {key!r} is not a block id (a block index like \"0\")")


def _architecture_field(doc: Mapping, where: str) -> dict:
    arch = doc["architecture"]
    if not isinstance(arch, dict) or not isinstance(arch.get("class"), str) or not isinstance(arch.get("config"), dict) \
            or not isinstance(arch.get("blocks"), list):
        raise PlanError(f"{where}: 'architecture' must be an object with 'class', 'config' and 'blocks' "
                        "(models.load.architecture of the source model); re-run fastlight plan")
    return arch


def _layers(layers, where: str) -> dict[int, WidthKeep]:
    if not isinstance(layers, Mapping) or not layers:
        raise PlanError(f"{where}: 'layers' must be a non-empty object "
                        '{"<block id>": {"keep_heads": [...], "keep_ffn": [...]}}')
    out: dict[int, WidthKeep] = {}
    for key, spec in layers.items():
        i = _block_key(key, where)
        if i in out:
            raise PlanError(f"{where}: 'layers' names block {i} twice")
        if isinstance(spec, WidthKeep):
            spec = {"keep_heads": list(spec.keep_heads), "keep_ffn": list(spec.keep_ffn)}
        if not isinstance(spec, Mapping) or "keep_heads" not in spec or "keep_ffn" not in spec:
            raise PlanError(f"{where}: layer {i} needs keep_heads and keep_ffn (lists of kept ids)")
        unknown = sorted(set(spec) - {"keep_heads", "keep_ffn"})
        if unknown:
            raise PlanError(f"{where}: layer {i} has unknown keys {unknown} (expected 'keep_heads', 'keep_ffn')")
        heads = _int_list(spec["keep_heads"], f"{where}: layer {i} 'keep_heads'")
        ffn = _int_list(spec["keep_ffn"], f"{where}: layer {i} 'keep_ffn'")
        if not heads or not ffn:
            raise PlanError(f"{where}: layer {i} must keep at least 1 head and 1 FFN unit "
                            "(to remove a whole block use a depth plan)")
        out[i] = WidthKeep(heads, ffn)
    return out


def _parse(doc, where: str) -> Plan:
    if isinstance(doc, Plan):
        return doc
    if not isinstance(doc, Mapping):
        raise PlanError(f"{where} must be a JSON object, got {type(doc).__name__}; re-run fastlight plan")
    if doc.get("type") not in PLAN_TYPES:
        raise PlanError(f"{where}: 'type' must be one of {PLAN_TYPES}, got {doc.get('type')!r}")
    fmt = doc.get("format", 1)
    if fmt not in (1, PLAN_FORMAT):
        raise PlanError(f"{where}: 'format' {fmt!r} is not a plan format this fastlight reads (1 or {PLAN_FORMAT}); "
                        "re-run fastlight plan")
    need = COMMON_KEYS + (("architecture",) if fmt >= 2 else ()) \
        + (("drop_blocks", "keep_blocks") if doc["type"] == "depth" else ("layers",))
    missing = [k for k in need if k not in doc]
    if missing:
        raise PlanError(f"{where} lacks {missing}; re-run fastlight plan")
    if not isinstance(doc["fingerprint"], str) or not doc["fingerprint"]:
        raise PlanError(f"{where}: 'fingerprint' must be a non-empty string (the architecture fingerprint of the "
                        f"model the plan was made for), got {doc['fingerprint']!r}; re-run fastlight plan")
    if doc["family"] not in FAMILIES:
        raise PlanError(f"{where}: 'family' must be one of {list(FAMILIES)}, got {doc['family']!r}")
    ratio = _fraction(doc, "prune_ratio", where, low_open=True)
    achieved = _fraction(doc, "achieved_ratio", where, low_open=False)
    before = _count(doc, "num_params_before", where)
    after = _count(doc, "num_params_after", where)
    if after > before:
        raise PlanError(f"{where}: 'num_params_after' {after} exceeds 'num_params_before' {before}; re-run fastlight plan")
    fields = dict(type=doc["type"], fingerprint=doc["fingerprint"], family=doc["family"], prune_ratio=ratio,
                  achieved_ratio=achieved, num_params_before=before, num_params_after=after, format=fmt,
                  architecture=_architecture_field(doc, where) if fmt >= 2 else None)
    if doc["type"] == "width":
        return Plan(**fields, layers=_layers(doc["layers"], where))
    drop = _int_list(doc["drop_blocks"], f"{where}: 'drop_blocks'")
    keep = _int_list(doc["keep_blocks"], f"{where}: 'keep_blocks'")
    both = sorted(set(drop) & set(keep))
    if both:
        raise PlanError(f"{where}: blocks {both} are in both 'keep_blocks' and 'drop_blocks'; list each block in one")
    if not keep:
        raise PlanError(f"{where}: 'keep_blocks' is empty: the plan drops every block; keep at least one")
    m = len(drop) + len(keep)
    unassigned = sorted(set(range(m)) - set(drop) - set(keep))
    if unassigned or max(drop + keep) >= m:
        raise PlanError(f"{where}: 'drop_blocks' + 'keep_blocks' must be the blocks 0..{m - 1} exactly "
                        f"(unassigned: {unassigned}, out of range: {[i for i in drop + keep if i >= m]})")
    return Plan(**fields, drop_blocks=drop, keep_blocks=keep)


def _describe(arch: dict, fingerprint: str, keys: list[str]) -> str:
    """'a WanTransformer3DModel with num_layers=16, ffn_dim=256 (architecture 1a2b...)'."""
    shown = ", ".join(f"{k}={_short(arch['config'].get(k))}" for k in keys) or f"{len(arch['blocks'])} blocks"
    return f"a {arch['class']} with {shown} (architecture {fingerprint})"


def _architecture_mismatch(plan: Plan, model: Denoiser, where: str) -> str:
    mine, theirs = plan.architecture, architecture(model)
    if mine == theirs:  # same class, config and layout: other parameter shapes, or an edited fingerprint
        return (f"{where} was made for a {mine['class']} of this config but another fingerprint (architecture "
                f"{plan.fingerprint}, this model {architecture_fingerprint(model)}: other parameter shapes, or an "
                "edited file); make the plan on this model with fastlight plan")
    keys = sorted(k for k in set(mine["config"]) | set(theirs["config"]) if mine["config"].get(k) != theirs["config"].get(k))
    if mine["class"] != theirs["class"]:
        keys = []
    return (f"{where} was made for {_describe(mine, plan.fingerprint, keys[:4])} but this model is "
            f"{_describe(theirs, architecture_fingerprint(model), keys[:4])}; a plan fits only models of the "
            "architecture it was made on (its teacher, or a Stage II model trained from it): make the plan on this "
            "model with fastlight analyze and fastlight plan")


def _check_against(plan: Plan, model: Denoiser, where: str) -> None:
    if plan.format >= 2:
        if plan.fingerprint != architecture_fingerprint(model):
            raise PlanError(_architecture_mismatch(plan, model, where))
    elif plan.fingerprint != model_fingerprint(model):  # format 1: tied to the weights it was made on
        raise PlanError(f"{where} (format 1, tied to weights) was made for another model (fingerprint "
                        f"{plan.fingerprint}, this model {model_fingerprint(model)}); re-run fastlight plan on this model")
    if plan.family != model.family:
        raise PlanError(f"{where}: 'family' is for a {plan.family} model but this model is {model.family}; "
                        "make the plan on this model")
    total = model.num_params()
    if plan.num_params_before != total:
        raise PlanError(f"{where}: 'num_params_before' says the model has {plan.num_params_before} parameters but it "
                        f"has {total}; re-run fastlight plan on this model")
    n = model.num_blocks
    if plan.type == "depth":
        for key, ids in (("drop_blocks", plan.drop_blocks), ("keep_blocks", plan.keep_blocks)):
            bad = [i for i in ids if i >= n]
            if bad:
                raise PlanError(f"{where}: '{key}' names block {bad[0]} but the model has blocks 0..{n - 1}")
        if len(plan.drop_blocks) + len(plan.keep_blocks) != n:
            raise PlanError(f"{where}: 'drop_blocks' + 'keep_blocks' must be the blocks 0..{n - 1} exactly "
                            f"(unassigned: {sorted(set(range(n)) - set(plan.drop_blocks) - set(plan.keep_blocks))})")
        return
    for i, keep in sorted(plan.layers.items()):
        if i >= n:
            raise PlanError(f"{where}: 'layers' names block {i} but the model has blocks 0..{n - 1}")
        L = width_layout(model, i)
        if keep.keep_heads[-1] >= L.num_heads:
            raise PlanError(f"{where}: layer {i} keeps head {keep.keep_heads[-1]} but the block has heads 0..{L.num_heads - 1}")
        if keep.keep_ffn[-1] >= L.ffn_dim:
            raise PlanError(f"{where}: layer {i} keeps FFN unit {keep.keep_ffn[-1]} but the block has units 0..{L.ffn_dim - 1}")


# ---- plan.json ------------------------------------------------------------------------------------
def validate_plan(plan, model: Denoiser | None = None, where: str = "plan") -> Plan:
    """A plan document (dict) or Plan -> Plan, checked for structure and, with `model` (the one it
    will be applied to), against it (`Plan.check`)."""
    plan = Plan.from_json(plan, where)
    return plan if model is None else plan.check(model, where)


def _plan_file(path: str | Path) -> Path:
    path = Path(path)
    return path / PLAN_FILE if path.is_dir() else path


def write_plan(path: str | Path, plan) -> Path:
    """Check (structure) and write plan.json atomically; `path` may be a (model) folder: FOLDER/plan.json."""
    path = _plan_file(path)
    return atomic_write_json(path, validate_plan(plan, where=f"plan {path}").to_json())


def read_plan(path: str | Path, model: Denoiser | None = None) -> Plan:
    """Read and check plan.json (a file, or a model folder holding one); with `model`, also against
    that model (its architecture must be the plan's). A missing file raises FileNotFoundError,
    anything else wrong a one-line PlanError (a ValueError)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"plan file {path} does not exist; make one with fastlight plan")
    if path.is_dir():
        if not (path / PLAN_FILE).is_file():
            raise PlanError(f"plan {path} is a folder; pass the plan JSON file (e.g. {path / PLAN_FILE}) or a model "
                            f"folder that holds its {PLAN_FILE}")
        path = path / PLAN_FILE
    data = read_json_object(path, PlanError, "re-run fastlight plan")
    return validate_plan(data, model, where=f"plan {path}")


def model_plan(folder: str | Path, model: Denoiser | None = None) -> Plan | None:
    """The plan a model folder carries (FOLDER/plan.json: the plan it was pruned or trained with), checked
    against `model` if given; None when the folder has no plan.json."""
    path = Path(folder) / PLAN_FILE
    return read_plan(path, model) if path.is_file() else None


def plan_file(out: str | Path) -> Path:
    """Where `make_plan(..., out)` writes: `out` itself if it names a .json file, else out/plan.json."""
    out_path = Path(out)
    return out_path / PLAN_FILE if out_path.is_dir() or out_path.suffix != ".json" else out_path


def plan_out_path(out: str | Path) -> Path:
    """`plan_file(out)`, refused (one line) if it cannot be written."""
    out_path = plan_file(out)
    if out_path.is_dir():
        raise PathError(f"--out {out_path} is a folder; give a .json file path for the plan")
    check_dir_creatable(out_path.parent, "--out folder")
    return out_path


def make_plan(importance_path: str, model_path: str, prune_ratio: float, out: str, kind: str = "depth",
              keep_ends: bool = True, reference: str | None = None, score: str = "in",
              prune_heads: bool = False, verbose: bool = False) -> Plan:
    """The plan of `fastlight plan IMPORTANCE --model MODEL --ratio R --out plan.json [--kind depth|width]`,
    written to `plan_file(out)`.

    Width plans keep every head unless `prune_heads` (the stock diffusers classes tie the head
    count to the residual width, so `fastlight prune` exports FFN-unit pruning only).

    depth: IMPORTANCE = importance.json (or importance_metric.json) from `fastlight analyze`;
    `reference` None = its primary rows ("blocks"), "self" = the data-free rows, "iterative" = the
    greedy drop order. width: IMPORTANCE = taylor.json. `verbose`: `depth_plan` / `width_plan` say
    what the plan removes.
    """
    if kind not in PLAN_TYPES:
        raise PlanError(f"--kind must be one of {PLAN_TYPES}, got {kind!r}")
    _check_ratio(prune_ratio)
    plan_out_path(out)  # an unusable --out fails before any work
    model = load_denoiser(resolve_model_path(model_path)).eval()
    if kind == "depth":
        rows = importance_rows(read_importance(importance_path, model), reference)
        plan = depth_plan(rows, model, prune_ratio, keep_ends, verbose=verbose)
    else:
        plan = width_plan(read_taylor(importance_path, model), model, prune_ratio, score=score, prune_heads=prune_heads,
                          verbose=verbose)
    write_plan(plan_out_path(out), plan)
    return plan
