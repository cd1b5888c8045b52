"""Model surgery: physically remove blocks (depth) or FFN units (width), checked.

Every surgery builds a NEW module of the SAME diffusers class from an edited config
(`type(model).from_config(...)`, never by deleting ModuleList entries), copies the kept
weights into it by name with `load_state_dict(strict=True)`, and asserts the parameter
count against a count computed independently of the new module. The result is a Denoiser
of the same adapter class, so `Denoiser.save` writes a folder the stock diffusers class
loads with `from_pretrained`.

Depth (Wan and HunyuanVideo): drop whole blocks. Wan: `num_layers` = blocks kept,
`blocks.{new}` <- `blocks.{old}`. HunyuanVideo: double and single blocks are reduced per
kind (`num_layers`, `num_single_layers`), `transformer_blocks.{new}` /
`single_transformer_blocks.{new}` re-indexed within their kind; the token refiner's
blocks are not prunable and are copied unchanged. A depth-pruned model computes exactly
what the source computes with the same blocks skipped (`denoiser(..., skip=drop)`).

Width (Wan only): FFN hidden units. diffusers' `WanTransformer3DModel` has ONE global
`ffn_dim`, so per-layer widths cannot be expressed in the stock class; a width plan must
keep the same NUMBER of units in every block (which units may differ per block: the
kept rows of `ffn.net[0].proj` (weight + bias) and columns of `ffn.net[2].weight` are
sliced per block). A dropped unit is exactly a unit whose output column is zeroed, so the
pruned model equals the source with those columns masked (up to float summation order).

What is NOT supported, and why:
  * Attention-head pruning in Wan. The stock class sets the residual (hidden) width to
    `inner_dim = num_attention_heads * attention_head_dim`: patch embedding, every norm,
    the modulation tables, the condition embedder and the output head are sized by it.
    Dropping heads in the stock class therefore shrinks the residual stream of the whole
    model, which is not head pruning (Lightning Video keeps the hidden size and removes
    only heads). Such a model cannot be exported to the stock class, so `prune_width`
    refuses any plan that drops a head. (Were a class to decouple them, note that Wan's
    `qk_norm="rms_norm_across_heads"` normalises over ALL heads' dims together: slicing
    `norm_q` / `norm_k` to the kept heads changes the RMS statistic, so the result would
    differ from masking the heads, unlike FFN pruning.)
  * Width pruning of HunyuanVideo: its FFN width is a global `mlp_ratio` float shared by
    the double blocks' two FFNs (video and text stream) and the single blocks' fused
    `proj_mlp`/`proj_out`, and a plan names one `keep_ffn` per block; there is no
    unambiguous, stock-loadable mapping, so it is refused with a ValueError.

The architecture knowledge surgery needs (state-dict prefixes and config keys of each block kind,
the FFN's linears) is the adapters': `DEPTH_LAYOUT` and `FFN_LINEARS` of fastlight/models/wan.py
and hunyuan.py. The Wan width functions below still read Wan config keys (`ffn_dim`,
`num_attention_heads`, `attention_head_dim`) themselves.
"""
from __future__ import annotations

import warnings
from typing import Iterable, Mapping

import torch

from fastlight.errors import ModelError, PlanError
from fastlight.models.denoiser import Denoiser


def depth_layout(denoiser: Denoiser) -> dict[str, tuple[str, str]]:
    """{block kind: (state-dict prefix of that kind's ModuleList, config key of its length)}: the adapter's."""
    layout = getattr(denoiser, "DEPTH_LAYOUT", None)
    if layout is None:
        raise ModelError(f"depth pruning does not know the {denoiser.family!r} family: its adapter "
                         f"{type(denoiser).__name__} has no DEPTH_LAYOUT (fastlight/models/)")
    return layout


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_count(what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(
            f"{what}: the pruned model has {got} parameters but {expected} were expected "
            f"(difference {got - expected}); the surgery is wrong, nothing was written"
        )


def _public_config(model) -> dict:
    return {k: v for k, v in dict(model.config).items() if not k.startswith("_")}


def _build_like(model: torch.nn.Module, config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A new `type(model)` from `config`, holding exactly `state` (strict), on model's device.

    Parameters are created empty (meta) and then assigned the given tensors, so that no
    throw-away random initialisation of a large model is computed and each tensor keeps
    its dtype; non-persistent buffers (e.g. RoPE tables) are built from the config."""
    cls = type(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from accelerate import init_empty_weights
        except ImportError:  # pragma: no cover - accelerate is a dependency
            new = cls.from_config(config)
        else:
            with init_empty_weights(include_buffers=False):
                new = cls.from_config(config)
    new.load_state_dict(state, strict=True, assign=True)
    meta = [n for n, p in new.named_parameters() if p.is_meta]
    if meta:
        raise RuntimeError(f"surgery left {len(meta)} parameters unset (e.g. {meta[0]})")
    # non-persistent buffers (RoPE tables) depend on config entries surgery does not touch:
    # take the source's, so that a model cast to bf16 keeps computing exactly the same
    source_buffers = dict(model.named_buffers())
    for name, buf in list(new.named_buffers()):
        src = source_buffers.get(name)
        if name not in state and src is not None and src.shape == buf.shape:
            owner, _, leaf = name.rpartition(".")
            new.get_submodule(owner)._buffers[leaf] = src.detach().clone()
    try:
        device = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        device = torch.device("cpu")
    return new.to(device).train(model.training)


def _rewrap(denoiser: Denoiser, model: torch.nn.Module) -> Denoiser:
    """The same adapter class around `model`, with the source's null text and meta."""
    new = type(denoiser)(model, denoiser.null_text.detach().clone(), dict(denoiser.meta))
    new.load_null_state({k: v.detach().clone() for k, v in denoiser.null_state().items()})
    return new.to(denoiser.null_text.device)


def depth_mapping(denoiser: Denoiser, drop_blocks: Iterable[int]) -> tuple[dict, dict]:
    """For each kept block: (prefix, old kind index) -> new kind index; and the config
    changes {config key: (old length, new length)}."""
    drop = set(drop_blocks)
    layout = depth_layout(denoiser)
    n = denoiser.num_blocks
    bad = sorted(i for i in drop if not (isinstance(i, int) and 0 <= i < n))
    if bad:
        raise PlanError(f"cannot drop block {bad[0]}: the model has blocks 0..{n - 1}")
    if len(drop) >= n:
        raise PlanError("cannot drop every block of the model")
    config = dict(denoiser.model.config)
    rename, changes = {}, {}
    for kind, (prefix, key) in layout.items():
        infos = [b for b in denoiser.blocks if b.kind == kind]
        if config.get(key) != len(infos):
            raise RuntimeError(f"config {key}={config.get(key)} but the model has {len(infos)} {kind} blocks")
        kept = [b for b in infos if b.index not in drop]
        for new_k, b in enumerate(kept):
            rename[(prefix, b.kind_index)] = new_k
        changes[key] = (len(infos), len(kept))
    return rename, changes


def prune_depth(denoiser: Denoiser, drop_blocks: Iterable[int]) -> Denoiser:
    """A new denoiser of the same class without the `drop_blocks` (global ids).

    Raises ValueError for ids out of range, RuntimeError if the parameter count differs
    from `denoiser.num_params(drop_blocks)`."""
    drop = sorted(set(drop_blocks))
    rename, changes = depth_mapping(denoiser, drop)
    prefixes = {p for p, _ in depth_layout(denoiser).values()}
    state = {}
    for name, t in denoiser.model.state_dict().items():
        head, _, rest = name.partition(".")
        idx, _, tail = rest.partition(".")
        if head in prefixes and idx.isdigit():
            new_k = rename.get((head, int(idx)))
            if new_k is None:  # a dropped block
                continue
            name = f"{head}.{new_k}.{tail}"
        state[name] = t.detach().clone()
    config = _public_config(denoiser.model)
    for key, (_, new_len) in changes.items():
        config[key] = new_len
    new = _rewrap(denoiser, _build_like(denoiser.model, config, state))
    _check_count(f"depth pruning of blocks {drop}", count_params(new.model), denoiser.num_params(drop))
    return new


def _layer_spec(block: int, spec):
    """(keep_heads, keep_ffn) from a plan's per-layer dict {"keep_heads": [...], "keep_ffn": [...]};
    a missing or None entry (or spec None) = all kept."""
    if spec is None:
        return None, None
    if not isinstance(spec, Mapping):
        raise PlanError(f"width spec of block {block} must be an object with 'keep_heads' / 'keep_ffn', "
                        f"got {type(spec).__name__}")
    unknown = set(spec) - {"keep_heads", "keep_ffn"}
    if unknown:
        raise PlanError(f"width spec of block {block} has unknown keys {sorted(unknown)} (expected 'keep_heads', 'keep_ffn')")
    return spec.get("keep_heads"), spec.get("keep_ffn")


def _check_ids(what: str, ids, limit: int) -> list[int]:
    ids = [int(i) for i in ids]
    if sorted(set(ids)) != ids:
        raise PlanError(f"{what} must be sorted and without duplicates")
    if ids and (ids[0] < 0 or ids[-1] >= limit):
        bad = ids[0] if ids[0] < 0 else ids[-1]
        raise PlanError(f"{what} names id {bad} but there are {limit} (0..{limit - 1})")
    return ids


def wan_ffn_keep(denoiser: Denoiser, layers: Mapping) -> tuple[dict[int, list[int]], int]:
    """Validate a width spec for Wan, e.g. a width plan's "layers" ({"<block id>" or block id:
    {"keep_heads": [...] | None, "keep_ffn": [...] | None}}): {block: kept FFN unit ids} for every
    block, and the common kept count. Raises ValueError for head pruning and for unequal widths."""
    if denoiser.family != "wan":
        raise PlanError(
            f"width pruning supports Wan only (this model is {denoiser.family}); use a depth plan for HunyuanVideo"
        )
    cfg = denoiser.model.config
    H, F, n = cfg.num_attention_heads, cfg.ffn_dim, denoiser.num_blocks
    specs = {}
    for key, spec in layers.items():
        try:
            b = int(key)
        except (TypeError, ValueError):
            raise PlanError(f"width spec key {key!r} is not a block id") from None
        if not 0 <= b < n:
            raise PlanError(f"width spec names block {b} but the model has blocks 0..{n - 1}")
        if b in specs:
            raise PlanError(f"width spec names block {b} twice")
        specs[b] = _layer_spec(b, spec)
    keep: dict[int, list[int]] = {}
    for b in range(n):
        heads, ffn = specs.get(b, (None, None))
        if heads is not None:
            heads = _check_ids(f"block {b} keep_heads", heads, H)
            if len(heads) != H:
                raise PlanError(
                    f"block {b} drops {H - len(heads)} of {H} attention heads, but the stock WanTransformer3DModel "
                    "ties the head count to the residual width (inner_dim = heads * head_dim), so head pruning "
                    "cannot be exported to it; prune FFN units only (keep every head)"
                )
        keep[b] = list(range(F)) if ffn is None else _check_ids(f"block {b} keep_ffn", ffn, F)
        if not keep[b]:
            raise PlanError(f"block {b} keeps no FFN units; drop the block with a depth plan instead")
    counts = {b: len(k) for b, k in keep.items()}
    if len(set(counts.values())) > 1:
        by_width = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
        (b1, k1), (b2, k2) = by_width[0], by_width[-1]
        raise PlanError(
            f"block {b1} keeps {k1} FFN units but block {b2} keeps {k2}: the stock WanTransformer3DModel has one "
            "ffn_dim for all blocks, so every block must keep the same number of units"
        )
    return keep, next(iter(counts.values()))


def wan_width_params_after(denoiser: Denoiser, kept_units: int) -> int:
    """Parameter count after keeping `kept_units` FFN units per block, from the config alone:
    each dropped unit removes one row + bias of the first FFN linear and one column of the second."""
    cfg = denoiser.model.config
    dim = cfg.num_attention_heads * cfg.attention_head_dim
    per_unit = 2 * dim + 1
    return denoiser.num_params() - denoiser.num_blocks * (cfg.ffn_dim - kept_units) * per_unit


def prune_width(denoiser: Denoiser, layers: Mapping) -> Denoiser:
    """A new Wan denoiser with fewer FFN units per block (see the module docstring).

    `layers`: {block id (int or str): {"keep_heads": [...] | None, "keep_ffn": [...] | None}}
    (a width plan's "layers", as `fastlight.analyze.plans.read_plan` returns it); blocks left out
    keep everything. Every block must keep the
    same number of FFN units, and every head."""
    keep, k = wan_ffn_keep(denoiser, layers)
    (prefix, _), = depth_layout(denoiser).values()
    ffn_in, ffn_out = denoiser.FFN_LINEARS
    state = {}
    for name, t in denoiser.model.state_dict().items():
        t = t.detach()
        head, _, rest = name.partition(".")
        idx, _, tail = rest.partition(".")
        if head == prefix and idx.isdigit():
            rows = torch.tensor(keep[int(idx)], dtype=torch.long, device=t.device)
            if tail in (f"{ffn_in}.weight", f"{ffn_in}.bias"):
                t = t.index_select(0, rows)
            elif tail == f"{ffn_out}.weight":
                t = t.index_select(1, rows)
        state[name] = t.clone()
    config = _public_config(denoiser.model)
    config["ffn_dim"] = k
    new = _rewrap(denoiser, _build_like(denoiser.model, config, state))
    _check_count(f"FFN width pruning to {k} units", count_params(new.model), wan_width_params_after(denoiser, k))
    return new
