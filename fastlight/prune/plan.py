"""Reading and checking pruning plans (the JSON files `fastlight/analyze/plans.py` writes).

Two plan types (block ids are the denoiser's global ids, `Denoiser.blocks[i].index`):

    depth: {"type": "depth", "fingerprint", "family", "prune_ratio", "achieved_ratio",
            "drop_blocks": [ids], "keep_blocks": [ids], "num_params_before", "num_params_after"}
    width: {"type": "width", "fingerprint", "family", "prune_ratio", "achieved_ratio",
            "layers": {"<block id>": {"keep_heads": [head ids], "keep_ffn": [unit ids]}},
            "num_params_before", "num_params_after"}

`load_plan` checks what can be checked without the model (types, ranges, duplicates);
`check_plan_against` checks it against the model it will be applied to (fingerprint,
family, block / head / unit ids in range, parameter counts). Every failure is a one-line
ValueError that names the field.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

FAMILIES = ("wan", "hunyuan")


@dataclass(frozen=True)
class LayerWidth:
    """Kept attention heads and FFN units of one block (None = all kept)."""

    keep_heads: tuple[int, ...] | None
    keep_ffn: tuple[int, ...] | None


@dataclass(frozen=True)
class Plan:
    type: str  # "depth" | "width"
    fingerprint: str
    family: str
    prune_ratio: float  # target fraction of parameters removed
    achieved_ratio: float | None
    num_params_before: int | None
    num_params_after: int | None
    drop_blocks: tuple[int, ...] = ()  # depth
    keep_blocks: tuple[int, ...] | None = None  # depth (None when the plan omits it)
    layers: dict[int, LayerWidth] = field(default_factory=dict)  # width
    path: str = "<plan>"


def _fail(where: str, msg: str):
    raise ValueError(f"plan {where}: {msg}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_list(where: str, key: str, value, *, sort_required: bool = False) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(v) for v in value):
        _fail(where, f"{key!r} must be a list of integer ids, got {json.dumps(value)[:80]}")
    if any(v < 0 for v in value):
        _fail(where, f"{key!r} has a negative id {min(value)}")
    if len(set(value)) != len(value):
        dup = sorted({v for v in value if value.count(v) > 1})
        _fail(where, f"{key!r} lists ids {dup} more than once")
    if sort_required and value != sorted(value):
        _fail(where, f"{key!r} must be sorted ascending")
    return tuple(value)


def _ratio(where: str, key: str, value, required: bool) -> float | None:
    if value is None and not required:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        _fail(where, f"{key!r} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= value < 1.0:
        _fail(where, f"{key!r} = {value} is not a fraction of parameters removed in [0, 1) (0.3 = prune 30%)")
    return float(value)


def _count(where: str, key: str, value) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value <= 0:
        _fail(where, f"{key!r} must be a positive integer, got {value!r}")
    return value


def parse_plan(data, where: str = "<plan>") -> Plan:
    """Validate a plan already read from JSON (a dict)."""
    if not isinstance(data, dict):
        _fail(where, f"must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind not in ("depth", "width"):
        _fail(where, f"'type' must be 'depth' or 'width', got {kind!r}")
    fingerprint = data.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        _fail(where, "has no 'fingerprint' (the model_fingerprint of the model it was made for)")
    family = data.get("family")
    if family not in FAMILIES:
        _fail(where, f"'family' must be one of {list(FAMILIES)}, got {family!r}")
    prune_ratio = _ratio(where, "prune_ratio", data.get("prune_ratio"), required=True)
    achieved = _ratio(where, "achieved_ratio", data.get("achieved_ratio"), required=False)
    before = _count(where, "num_params_before", data.get("num_params_before"))
    after = _count(where, "num_params_after", data.get("num_params_after"))
    if before is not None and after is not None and after > before:
        _fail(where, f"num_params_after {after} exceeds num_params_before {before}")
    common = dict(
        type=kind, fingerprint=fingerprint, family=family, prune_ratio=prune_ratio, achieved_ratio=achieved,
        num_params_before=before, num_params_after=after, path=where,
    )
    if kind == "depth":
        if "drop_blocks" not in data:
            _fail(where, "a depth plan needs 'drop_blocks'")
        drop = _int_list(where, "drop_blocks", data["drop_blocks"])
        keep = None
        if data.get("keep_blocks") is not None:
            keep = _int_list(where, "keep_blocks", data["keep_blocks"])
            both = sorted(set(keep) & set(drop))
            if both:
                _fail(where, f"blocks {both} are in both 'keep_blocks' and 'drop_blocks'")
            if not keep:
                _fail(where, "'keep_blocks' is empty: a depth plan cannot drop every block")
        return Plan(**common, drop_blocks=tuple(sorted(drop)), keep_blocks=None if keep is None else tuple(sorted(keep)))

    layers_raw = data.get("layers")
    if not isinstance(layers_raw, dict) or not layers_raw:
        _fail(where, "a width plan needs 'layers': {\"<block id>\": {\"keep_heads\": [...], \"keep_ffn\": [...]}}")
    layers: dict[int, LayerWidth] = {}
    for key, spec in layers_raw.items():
        try:
            block = int(key)
        except (TypeError, ValueError):
            block = -1
        if block < 0 or str(block) != str(key).strip():
            _fail(where, f"'layers' key {key!r} is not a block id")
        if not isinstance(spec, dict):
            _fail(where, f"layers[{key!r}] must be an object with 'keep_heads' and 'keep_ffn'")
        unknown = sorted(set(spec) - {"keep_heads", "keep_ffn"})
        if unknown:
            _fail(where, f"layers[{key!r}] has unknown keys {unknown} (expected 'keep_heads', 'keep_ffn')")
        heads = ffn = None
        if spec.get("keep_heads") is not None:
            heads = _int_list(where, f"layers[{key}].keep_heads", spec["keep_heads"], sort_required=True)
            if not heads:
                _fail(where, f"layers[{key!r}] keeps no attention heads; drop the block with a depth plan instead")
        if spec.get("keep_ffn") is not None:
            ffn = _int_list(where, f"layers[{key}].keep_ffn", spec["keep_ffn"], sort_required=True)
            if not ffn:
                _fail(where, f"layers[{key!r}] keeps no FFN units; drop the block with a depth plan instead")
        if block in layers:
            _fail(where, f"'layers' names block {block} twice")
        layers[block] = LayerWidth(heads, ffn)
    return Plan(**common, layers=dict(sorted(layers.items())))


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan JSON file (one-line ValueError / FileNotFoundError on bad input)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"plan file {path} does not exist; make one with the analyze step")
    if path.is_dir():
        raise ValueError(f"plan {path} is a folder; pass the plan JSON file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"plan {path} is not valid JSON ({str(e).splitlines()[0]})") from None
    return parse_plan(data, str(path))


def check_plan_against(plan: Plan, denoiser, fingerprint: str) -> None:
    """Check that `plan` was made for `denoiser` (whose `model_fingerprint` is `fingerprint`)
    and that every id it names exists in the model."""
    where = plan.path
    if plan.fingerprint != fingerprint:
        _fail(where, f"was made for another model (fingerprint {plan.fingerprint}, this model is {fingerprint}); "
                     "re-run the analysis on this model")
    if plan.family != denoiser.family:
        _fail(where, f"is for a {plan.family} model but this model is {denoiser.family}")
    n = denoiser.num_blocks
    total = denoiser.num_params()
    if plan.num_params_before is not None and plan.num_params_before != total:
        _fail(where, f"says the model has {plan.num_params_before} parameters but it has {total}")
    ids = plan.drop_blocks + (plan.keep_blocks or ()) + tuple(plan.layers)
    bad = sorted({i for i in ids if i >= n})
    if bad:
        _fail(where, f"names block {bad[0]} but the model has blocks 0..{n - 1}")
    if plan.type == "depth":
        if plan.keep_blocks is not None and set(plan.keep_blocks) | set(plan.drop_blocks) != set(range(n)):
            missing = sorted(set(range(n)) - set(plan.keep_blocks) - set(plan.drop_blocks))
            _fail(where, f"'keep_blocks' and 'drop_blocks' leave blocks {missing} unassigned (the model has blocks 0..{n - 1})")
        if len(plan.drop_blocks) >= n:
            _fail(where, "drops every block of the model")
