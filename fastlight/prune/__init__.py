"""Model surgery: apply a pruning plan (drop blocks, FFN units), checked, stock-loadable.

The plan format and its validation live in `fastlight.analyze.plans` (`read_plan`, `validate_plan`)."""
from fastlight.prune.apply import prune_model
from fastlight.prune.surgery import count_params, prune_depth, prune_width

__all__ = [
    "count_params",
    "prune_depth",
    "prune_model",
    "prune_width",
]
