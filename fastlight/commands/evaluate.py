"""`fastlight evaluate MODEL`: ShapesBench (+ VBench-style dimensions) of a Shapes model."""
from __future__ import annotations

from pathlib import Path

from fastlight.commands.options import (add_sampler_args, block_ids, int_list, output_folder,
                                        sampler_overrides, whole_number)


def add_parser(sub) -> None:
    s = sub.add_parser("evaluate", help="ShapesBench (+ VBench-style dimensions) of a Shapes model")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--out", type=output_folder, default="runs/evaluate")
    add_sampler_args(s)
    s.add_argument("--num-cases", type=whole_number, default=320)
    s.add_argument("--seed", type=whole_number, default=0)
    s.add_argument("--skip", type=int_list, default="", help="comma list of block ids to skip")
    s.add_argument("--no-videos", action="store_true")
    s.add_argument("--no-vbench", action="store_true")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.shapes.bench import evaluate_model

    skip = block_ids(a.skip)
    res = evaluate_model(a.model, a.out, overrides=sampler_overrides(a), num_cases=a.num_cases, seed=a.seed,
                         save_videos=not a.no_videos, skip=skip, vbench=not a.no_vbench)
    print(f"{summary_line(res)} -> {Path(a.out) / 'shapesbench.json'}")


def summary_line(res: dict) -> str:
    """'ShapesBench score 0.9050 [0.8950, 0.9150] (95%, 320 test cases) (ideal 0.9960); direction 0.950,
    ...; 0 clip(s) with a ghost': a shapesbench.json document in one line."""
    from fastlight.shapes.bench import score_interval

    iv = score_interval(res)
    n, split = res["num_cases"], res["split"]
    band = f" [{iv.low:.4f}, {iv.high:.4f}] (95%, {n} {split} cases)" if iv else f" ({n} {split} case)"
    return (f"ShapesBench score {res['score']:.4f}{band} (ideal {res['ideal']['score']:.4f}); "
            + ", ".join(f"{k} {v:.3f}" for k, v in res["parts"].items() if v is not None)
            + f"; {res['metrics']['num_ghost_clips']} clip(s) with a ghost")
