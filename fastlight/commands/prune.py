"""`fastlight prune MODEL --plan PLAN --out DIR`: a smaller model of the same diffusers class."""
from __future__ import annotations

from fastlight.commands.options import output_folder


def add_parser(sub) -> None:
    s = sub.add_parser("prune", help="surgery: a smaller model of the same diffusers class from a plan")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--plan", required=True, help="plan JSON from `fastlight plan`")
    s.add_argument("--out", type=output_folder, required=True, help="output folder (must be empty or absent)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.prune import prune_command

    prune_command(a.model, a.plan, a.out, overwrite=a.overwrite)
