"""`fastlight evaluate MODEL`: ShapesBench (+ VBench-style dimensions) of a Shapes model."""
from __future__ import annotations

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
    from fastlight.shapes.bench import evaluate_command

    skip = block_ids(a.skip)
    res = evaluate_command(a.model, a.out, overrides=sampler_overrides(a), num_cases=a.num_cases, seed=a.seed,
                           save_videos=not a.no_videos, skip=skip, vbench=not a.no_vbench)
    print(f"ShapesBench score {res['score']:.3f} (ideal clips {res['ideal']['score']:.3f}); details in {a.out}/shapesbench.json")
