"""The Shapes world's Stage I plug-ins: what a Shapes model is analysed with, and its oracle metric.

    [project.entry-points."fastlight.model_defaults"]   shapes = "fastlight.shapes.analysis:model_defaults"
    [project.entry-points."fastlight.metrics"]          shapes-oracle = "fastlight.shapes.analysis:OracleMetric"

A Shapes model folder's fastlight.json holds its `world` (size, frames); from it `model_defaults`
names the calibration source (the `shapes` data source, fastlight/shapes/source.py, at that size)
and the metric (`shapes-oracle`), which generic code (fastlight/analyze) then builds by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastlight.analyze.calib import DEFAULT_SHIFT, CalibrationSet, source_calibration
from fastlight.errors import ConfigError, ModelError
from fastlight.models.denoiser import Denoiser
from fastlight.shapes import world as shapes
from fastlight.shapes.generate import generate_shapes, world_of
from fastlight.shapes.teacher_eval import score_videos

HELDOUT_METRIC_SEED = 31_000_000  # the oracle metric's cases: far from the seeds of training and of ShapesBench


def data_spec(meta: dict) -> dict | None:
    """The `shapes` data source of a Shapes model's world (None for a folder without one)."""
    w = meta.get("world")
    if not isinstance(w, dict):
        return None
    spec = {"_component_": "shapes", "size": int(w["size"]), "num_frames": int(w["num_frames"]), "image": True}
    return spec if w.get("world", "v1") == "v1" else {**spec, "world": w["world"]}  # v1: as before the v2 world


def model_defaults(meta: dict) -> dict | None:
    """`fastlight.model_defaults` plug-in: calibration data and metric of a Shapes model folder."""
    spec = data_spec(meta)
    return None if spec is None else {"data": spec, "metric": "shapes-oracle"}


def shapes_calibration(model: Denoiser, num_samples: int, seed: int = 0, batch_size: int = 16,
                       shift: float | None = None) -> CalibrationSet:
    """The calibration set `fastlight analyze` draws for a Shapes model (its world's `calibration` stream)."""
    spec = data_spec(model.meta)
    if spec is None:
        raise ModelError("this model has no Shapes world in its fastlight.json; it is not an embedded Shapes model")
    shift = float(model.meta.get("shift", DEFAULT_SHIFT) if shift is None else shift)
    return source_calibration(spec, num_samples, seed, batch_size, shift)


@dataclass
class OracleMetric:
    """VDMini's metric for Shapes models: sample a fixed held-out set of (prompt, first frame) cases
    (same noise for every skip set) and score them with the oracle tracker:

        metric = (direction accuracy + colour kept) / 2          in [0, 1], higher = better

    Called as metric(model, skip) -> float (analyze.importance.metric_drop_importance)."""

    num_cases: int = 16
    num_steps: int = 20
    guidance: float = 4.0
    seed: int = HELDOUT_METRIC_SEED
    batch_size: int = 16
    _cases: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.num_cases < 1:
            raise ConfigError(f"the oracle metric needs num_cases >= 1, got {self.num_cases}")

    @property
    def description(self) -> str:
        return (f"Shapes oracle (direction_acc + colour_kept_frames) / 2 on {self.num_cases} held-out cases, "
                f"{self.num_steps} Euler steps, guidance {self.guidance}, seed {self.seed}")

    def cases(self, world: shapes.WorldConfig) -> tuple[list, torch.Tensor]:
        """The held-out clips and their first frames (B, 3, H, W), drawn once per world."""
        key = (world.size, world.num_frames)
        if key not in self._cases:
            clips = shapes.sample_clips(self.seed, self.num_cases, world)
            self._cases[key] = (clips, shapes.render_batch(clips, world)[:, :, 0])
        return self._cases[key]

    def __call__(self, model: Denoiser, skip: frozenset = frozenset()) -> float:
        world = world_of(model)
        clips, images = self.cases(world)
        device = next(model.parameters()).device
        model.to("cpu")  # generate_shapes draws its noise and conditions on the CPU; Shapes models are tiny
        try:
            vids = torch.cat([
                generate_shapes(model, [c.prompt for c in clips[i:i + self.batch_size]], images[i:i + self.batch_size],
                                self.num_steps, self.guidance, self.seed + i, skip=tuple(sorted(skip)))
                for i in range(0, self.num_cases, self.batch_size)
            ])
        finally:
            model.to(device)
        res = score_videos(vids, clips, world)
        return 0.5 * (res["direction_acc"] + res["colour_kept_frames"])
