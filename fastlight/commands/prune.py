"""`fastlight prune MODEL --plan PLAN --out DIR`: a smaller model of the same diffusers class."""
from __future__ import annotations

import json
from pathlib import Path

from fastlight.commands.options import output_folder


def add_parser(sub) -> None:
    s = sub.add_parser("prune", help="surgery: a smaller model of the same diffusers class from a plan")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--plan", required=True, help="plan JSON from `fastlight plan`")
    s.add_argument("--out", type=output_folder, required=True, help="output folder (must be empty or absent)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.prune import prune_model

    out = prune_model(a.model, a.plan, a.out, overwrite=a.overwrite)
    print(summary_line(json.loads((out / "manifest.json").read_text()), out))


def summary_line(m: dict, out: Path) -> str:
    """'pruned MODEL (depth: 4 -> 3 blocks, 1,000 -> 750 params, 25.0% removed, target 20.0%) -> OUT'
    from the pruned folder's manifest.json."""
    if m["plan_type"] == "depth":
        n = len(m["kept_blocks"]) + len(m["dropped_blocks"])
        blocks = f"{n} -> {len(m['kept_blocks'])} blocks"
    else:
        k = m["width"]["ffn_units_kept_per_block"]
        blocks = f"ffn_dim {m['config_changes'].get('ffn_dim', {}).get('from', k)} -> {k}"
    return (f"pruned {m['source']} ({m['plan_type']}: {blocks}, {m['num_params_before']:,} -> {m['num_params_after']:,} "
            f"params, {100 * m['achieved_ratio']:.1f}% removed, target {100 * m['prune_ratio']:.1f}%) -> {out}")
