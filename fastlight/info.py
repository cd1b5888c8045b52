"""`fastlight info PATH`: a model's blocks, parameters and config."""
from __future__ import annotations

from collections import Counter

from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path


def info_command(path: str) -> dict:
    from rich.console import Console
    from rich.table import Table

    model = load_denoiser(resolve_model_path(path))
    total = model.num_params()
    blocks = model.blocks
    in_blocks = sum(b.num_params for b in blocks)
    table = Table(title=f"{path}: {type(model.model).__name__} ({model.family})")
    table.add_column("block", justify="right")
    table.add_column("kind")
    table.add_column("params", justify="right")
    table.add_column("% of DiT", justify="right")
    for b in blocks:
        table.add_row(str(b.index), f"{b.kind}[{b.kind_index}]", f"{b.num_params:,}", f"{100 * b.num_params / total:.2f}")
    con = Console()
    con.print(table)
    kinds = Counter(b.kind for b in blocks)
    con.print(f"blocks: {len(blocks)} ({', '.join(f'{n} {k}' for k, n in kinds.items())})")
    con.print(f"parameters: {total:,} total, {in_blocks:,} in prunable blocks ({100 * in_blocks / total:.1f}%)")
    cfg = {k: v for k, v in dict(model.model.config).items() if not k.startswith("_")}
    con.print("config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    for key in ("kind", "steps", "world", "shift", "quality"):
        if key in model.meta:
            con.print(f"{key}: {model.meta[key]}")
    return {"num_params": total, "num_blocks": len(blocks), "kinds": dict(kinds)}
