"""`fastlight pretrain configs/shapes/pretrain.yaml`: the embedded Shapes teacher is trained by the generic
flow-matching recipe `pretrain` (fastlight/train/pretrain.py) on the one training loop, with the
Shapes source (`data: {_component_: shapes}`) and the prompt-sensitivity probe as a logging hook
(`hooks: [{_component_: shapes-probe}]`, fastlight/shapes/probe.py). This module names those pieces
for the Shapes world's own tools and tests."""
from __future__ import annotations

from fastlight.shapes.probe import PromptProbe, probe, probe_set
from fastlight.train.pretrain import PretrainConfig, PretrainRecipe

__all__ = ["PretrainConfig", "PretrainRecipe", "PromptProbe", "probe", "probe_set"]
