"""Model surgery: apply a pruning plan (drop blocks, FFN units), checked, stock-loadable."""
from fastlight.prune.command import prune_command
from fastlight.prune.plan import LayerWidth, Plan, check_plan_against, load_plan, parse_plan
from fastlight.prune.surgery import count_params, prune_depth, prune_width

__all__ = [
    "LayerWidth",
    "Plan",
    "check_plan_against",
    "count_params",
    "load_plan",
    "parse_plan",
    "prune_command",
    "prune_depth",
    "prune_width",
]
