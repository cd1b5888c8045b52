"""The embedded teacher's quality bar, measured by the Shapes oracle.

Held-out cases are ShapesBench's test cases (`bench.make_cases(n, world, split="test")`: the named
stream `shapes/test`, disjoint from the training and calibration streams and from the shipped
teacher's own training batches), so no (prompt, first frame) pair was seen in training: start
positions and sizes are continuous. `seed` picks the initial noise (ShapesBench's per-case noise
streams), so `--seed 0` samples exactly what `fastlight evaluate` samples.

The bar counts an object as following its prompt only when it moves in the prompted direction AND
the oracle sees no ghost of its colour (a duplicate, a wrap-around copy at the opposite border, a
smear: `world.check_clip`); a clip with a ghost fails. Rates come with 95% bootstrap intervals
over cases (`fastlight.evaluate.stats`).

In a v2 world (`shapes.WORLDS["v2"]`) the bar adds the issue's motion figures, each with its
interval over clips: `speed_within_10pct` (moving objects whose measured speed is within 10% of the
prompted one), `static_rate` (moving prompts whose object does not move) and `abrupt_rate` (objects
whose frame-to-frame motion jumps: `world.check_clip_v2`).
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import torch

from fastlight.diffusion.spec import choose_sampler
from fastlight.evaluate.stats import bootstrap_interval, mean_of, ratio_of_sums
from fastlight.fileio import atomic_write_json
from fastlight.models.load import load_denoiser, resolve_model_path
from fastlight.shapes import bench, world as shapes


def _case_rows(videos: torch.Tensor, clips: list[shapes.Clip], world: shapes.WorldConfig) -> list[dict]:
    return [shapes.check_clip(v, c, world) for v, c in zip(videos, clips)]


def score_videos(videos: torch.Tensor, clips: list[shapes.Clip], world: shapes.WorldConfig) -> dict:
    """The bar's figures (means over objects, ghost figures over clips) and, with >= 2 clips,
    95% intervals over clips of the direction, ghost-free and direction-without-ghost rates."""
    rows = _case_rows(videos, clips, world)
    objs = [o for r in rows for o in r["objects"]]
    speed = [o["speed_ratio"] for o in objs if o["speed_ratio"] is not None]
    res = {
        "num_objects": len(objs),
        "direction_acc": sum(o["direction_ok"] for o in objs) / len(objs),
        "direction_and_no_ghost": sum(o["ok"] for o in objs) / len(objs),
        "ghost_free_clips": sum(not r["ghost"] for r in rows) / len(rows),
        "num_ghost_clips": sum(r["ghost"] for r in rows),
        "colour_kept_frames": sum(o["colour_kept"] for o in objs) / len(objs),
        "objects_colour_kept_ge_95": sum(o["colour_kept"] >= 0.95 for o in objs) / len(objs),
        "shape_acc": sum(o["shape_ok"] for o in objs) / len(objs),
        "speed_ratio_mean": sum(speed) / max(len(speed), 1),
        "speed_abs_log_err": sum(abs(math.log(max(r, 1e-3))) for r in speed) / max(len(speed), 1),
    }
    if world.name == "v2":
        res.update(_motion_figures(rows, clips))
    if len(rows) >= 2:
        data = {"n": [len(r["objects"]) for r in rows],
                "direction_ok": [sum(o["direction_ok"] for o in r["objects"]) for r in rows],
                "ok": [sum(o["ok"] for o in r["objects"]) for r in rows],
                "ghost_free": [float(not r["ghost"]) for r in rows]}
        data = {k: np.asarray(v, dtype=np.float64) for k, v in data.items()}
        res["intervals"] = {
            "direction_acc": bootstrap_interval(ratio_of_sums("direction_ok", "n"), data).to_json(),
            "direction_and_no_ghost": bootstrap_interval(ratio_of_sums("ok", "n"), data).to_json(),
            "ghost_free_clips": bootstrap_interval(mean_of("ghost_free"), data).to_json(),
        }
        if world.name == "v2":
            res["intervals"].update(_motion_intervals(rows, clips))
    return res


def _motion_counts(rows: list[dict], clips: list[shapes.Clip]) -> dict[str, np.ndarray]:
    """Per clip: moving objects, those within 10% speed, static ones; objects judged for smoothness, abrupt ones."""
    out = {"moving": [], "speed_ok": [], "static": [], "judged": [], "abrupt": []}
    for r, c in zip(rows, clips):
        moving = [o for o, spec in zip(r["objects"], c.objects) if spec.direction != "still"]
        judged = [o for o in r["objects"] if o["abrupt"] is not None]
        out["moving"].append(len(moving))
        out["speed_ok"].append(sum(o["speed_ok"] for o in moving))
        out["static"].append(sum(o["static"] for o in moving))
        out["judged"].append(len(judged))
        out["abrupt"].append(sum(o["abrupt"] for o in judged))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _motion_figures(rows: list[dict], clips: list[shapes.Clip]) -> dict:
    d = _motion_counts(rows, clips)

    def rate(num: str, den: str) -> float | None:
        return float(d[num].sum() / d[den].sum()) if d[den].sum() else None

    return {"speed_within_10pct": rate("speed_ok", "moving"), "static_rate": rate("static", "moving"),
            "abrupt_rate": rate("abrupt", "judged")}


def _motion_intervals(rows: list[dict], clips: list[shapes.Clip]) -> dict:
    d = _motion_counts(rows, clips)
    out = {}
    for name, num, den in (("speed_within_10pct", "speed_ok", "moving"), ("static_rate", "static", "moving"),
                           ("abrupt_rate", "abrupt", "judged")):
        out[name] = bootstrap_interval(ratio_of_sums(num, den), d).to_json() if d[den].sum() else None
    return out


def evaluate_teacher(model_path: str = "shapes-teacher", num_cases: int = bench.DEFAULT_NUM_CASES, seed: int = 10_000, out: str | None = None,
                     batch: int = 32, record: bool = False, overrides: dict | None = None) -> dict:
    """The oracle's figures for `num_cases` held-out test cases sampled with the model's own sampler (or
    `overrides` of it: `spec.override`'s keywords), initial noise from `seed`."""
    path = resolve_model_path(model_path)
    choice = choose_sampler(path, **(overrides or {}))
    model = load_denoiser(path).eval()
    print(choice.line)
    world = bench.model_world(model)
    cases = bench.make_cases(num_cases, world, split="test")
    clips = [c.clip for c in cases]
    ideal = bench.ideal_videos(cases, world)
    t0 = time.time()
    vids = bench.generate(model, cases, choice.spec, seed=seed, batch_size=batch)
    spec = choice.spec
    res = {"model": str(model_path), "num_cases": num_cases, "split": "test", "num_steps": spec.num_steps,
           "cfg_scale": spec.guidance, "sampler": spec.to_json(), "seed": seed,
           "sample_time_s": round(time.time() - t0, 1), **score_videos(vids, clips, world)}
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
