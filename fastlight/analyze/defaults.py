"""What a model folder says it can be analysed with: its calibration data and its video metric.

A model's own fastlight.json may name them (the generic way, for any model family):

    "data":   {"_component_": "latents", "path": "SHARDS"}   # a `data:` spec (fastlight/data/source.py)
    "metric": "NAME"                                          # a metric registered in `fastlight.metrics`

For folders that do not, the plug-ins registered in the entry point group `fastlight.model_defaults`
are asked in turn: each is a function (the folder's fastlight.json as a dict) -> {"data": spec,
"metric": name} or None. The embedded Shapes world answers for its own models
(`fastlight.shapes.analysis:model_defaults`); generic code never looks at a plug-in's keys itself.
"""
from __future__ import annotations

from fastlight.models.denoiser import Denoiser
from fastlight.plugins import component, registered

KEYS = ("data", "metric")


def model_defaults(model: Denoiser) -> dict:
    """{"data": spec?, "metric": name?} for `model`: its fastlight.json's own keys first, then what
    the registered `fastlight.model_defaults` plug-ins say about it (first answer per key wins)."""
    meta = dict(getattr(model, "meta", {}) or {})
    out = {k: meta[k] for k in KEYS if meta.get(k) is not None}
    for name in sorted(registered("fastlight.model_defaults")):
        answer = component("fastlight.model_defaults", name)(meta) or {}
        for k in KEYS:
            if k not in out and answer.get(k) is not None:
                out[k] = answer[k]
    return out
