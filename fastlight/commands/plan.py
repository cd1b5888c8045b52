"""`fastlight plan IMPORTANCE --ratio R`: blocks (depth) or heads/FFN units (width) to prune."""
from __future__ import annotations

from fastlight.commands.options import finite_float


def add_parser(sub) -> None:
    s = sub.add_parser("plan", help="blocks (depth) or heads/FFN units (width) to prune for a parameter ratio")
    s.add_argument("importance", help="importance.json (depth) or taylor.json (width) from `fastlight analyze`")
    s.add_argument("--model", default="shapes-teacher")
    s.add_argument("--ratio", type=finite_float, required=True, help="fraction of the DiT's parameters to remove, e.g. 0.3")
    s.add_argument("--out", default="runs/plan.json")
    s.add_argument("--kind", default="depth", choices=["depth", "width"])
    s.add_argument("--no-keep-ends", action="store_true", help="allow dropping the first/last block")
    s.add_argument("--reference", default=None, choices=[None, "self", "iterative"])
    s.add_argument("--score", default="in", choices=["in", "out"])
    s.add_argument("--prune-heads", action="store_true", help="width: also drop heads (not exportable to stock Wan)")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.analyze.plans import make_plan, plan_file

    make_plan(a.importance, a.model, a.ratio, a.out, a.kind, keep_ends=not a.no_keep_ends, reference=a.reference,
              score=a.score, prune_heads=a.prune_heads, verbose=True)
    print(f"plan written to {plan_file(a.out)}")
