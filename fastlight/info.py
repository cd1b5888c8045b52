"""A model's blocks, parameters and config (what `fastlight info PATH` prints)."""
from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from fastlight.models.load import load_denoiser, resolve_model_path

META_KEYS = ("kind", "steps", "world", "shift", "quality")  # fastlight.json entries worth showing


def model_info(path: str) -> dict:
    """{"path", "class", "family", "blocks": [{index, kind, kind_index, params}], "num_params",
    "num_blocks", "params_in_blocks", "kinds": {kind: count}, "config", "meta"} of a model folder
    or preset."""
    model = load_denoiser(resolve_model_path(path))
    blocks = [{"index": b.index, "kind": b.kind, "kind_index": b.kind_index, "params": b.num_params}
              for b in model.blocks]
    return {
        "path": path,
        "class": type(model.model).__name__,
        "family": model.family,
        "blocks": blocks,
        "num_params": model.num_params(),
        "num_blocks": len(blocks),
        "params_in_blocks": sum(b["params"] for b in blocks),
        "kinds": dict(Counter(b["kind"] for b in blocks)),
        "config": {k: v for k, v in dict(model.model.config).items() if not k.startswith("_")},
        "meta": {k: model.meta[k] for k in META_KEYS if k in model.meta},
    }


def print_info(info: dict, console: Console | None = None) -> None:
    """The blocks table (kind, parameters, share of the DiT), totals, config and metadata."""
    con = console or Console()
    total = info["num_params"]
    table = Table(title=f"{info['path']}: {info['class']} ({info['family']})")
    table.add_column("block", justify="right")
    table.add_column("kind")
    table.add_column("params", justify="right")
    table.add_column("% of DiT", justify="right")
    for b in info["blocks"]:
        table.add_row(str(b["index"]), f"{b['kind']}[{b['kind_index']}]", f"{b['params']:,}",
                      f"{100 * b['params'] / total:.2f}")
    con.print(table)
    con.print(f"blocks: {info['num_blocks']} ({', '.join(f'{n} {k}' for k, n in info['kinds'].items())})")
    con.print(f"parameters: {total:,} total, {info['params_in_blocks']:,} in prunable blocks "
              f"({100 * info['params_in_blocks'] / total:.1f}%)")
    con.print("config: " + ", ".join(f"{k}={v}" for k, v in info["config"].items()))
    for key, value in info["meta"].items():
        con.print(f"{key}: {value}")
