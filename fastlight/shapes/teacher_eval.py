"""The embedded teacher's quality bar, measured by the Shapes oracle.

Held-out cases come from their own seed stream (training batches are drawn from
`data_seed * 1_000_003 + step`; these from `seed`), so no (prompt, first frame) pair
was seen in training: start positions and sizes are continuous.
"""
from __future__ import annotations

import json
import math
import time

import torch

from fastlight.shapes import world as shapes
from fastlight.fileio import atomic_write_json
from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path
from fastlight.diffusion.spec import choose_sampler
from fastlight.shapes.generate import generate, world_of


def score_videos(videos: torch.Tensor, clips: list[shapes.Clip], world: shapes.WorldConfig) -> dict:
    objs = []
    for v, c in zip(videos, clips):
        objs += shapes.check_clip(v, c, world)["objects"]
    speed = [o["speed_ratio"] for o in objs if o["speed_ratio"] is not None]
    return {
        "num_objects": len(objs),
        "direction_acc": sum(o["direction_ok"] for o in objs) / len(objs),
        "colour_kept_frames": sum(o["colour_kept"] for o in objs) / len(objs),
        "objects_colour_kept_ge_95": sum(o["colour_kept"] >= 0.95 for o in objs) / len(objs),
        "shape_acc": sum(o["shape_ok"] for o in objs) / len(objs),
        "speed_ratio_mean": sum(speed) / max(len(speed), 1),
        "speed_abs_log_err": sum(abs(math.log(max(r, 1e-3))) for r in speed) / max(len(speed), 1),
    }


def evaluate_teacher(model_path: str = "shapes-teacher", num_cases: int = 64, seed: int = 10_000, out: str | None = None,
                     batch: int = 32, record: bool = False, overrides: dict | None = None) -> dict:
    """The oracle's figures for `num_cases` held-out cases sampled with the model's own sampler (or
    `overrides` of it: `spec.override`'s keywords)."""
    path = resolve_model_path(model_path)
    choice = choose_sampler(path, **(overrides or {}))
    model = load_denoiser(path).eval()
    print(choice.line)
    world = world_of(model)
    world.p_two_objects = 0.3
    clips = shapes.sample_clips(seed, num_cases, world)
    ideal = shapes.render_batch(clips, world)
    t0 = time.time()
    vids = torch.cat([
        generate(model, [c.prompt for c in clips[i:i + batch]], ideal[i:i + batch, :, 0], choice.spec, seed + i, progress=True)
        for i in range(0, num_cases, batch)
    ])
    spec = choice.spec
    res = {"model": str(model_path), "num_cases": num_cases, "num_steps": spec.num_steps, "cfg_scale": spec.guidance,
           "sampler": spec.to_json(), "seed": seed, "sample_time_s": round(time.time() - t0, 1),
           **score_videos(vids, clips, world)}
    res["ideal_reference"] = score_videos(ideal, clips, world)
    print(json.dumps(res, indent=2))
    if record:  # keep the figures with the weights, in the model's manifest
        meta_path = path / "fastlight.json"
        meta = json.loads(meta_path.read_text())
        meta["quality"] = {k: v for k, v in res.items() if k != "model"}
        atomic_write_json(meta_path, meta)
    if out:
        atomic_write_json(out, res)
    return res
