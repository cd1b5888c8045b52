"""`fastlight demo`: sample the shipped teacher on several prompts."""
from __future__ import annotations

from fastlight.commands.options import add_sampler_args, output_folder, sampler_overrides, whole_number


def add_parser(sub) -> None:
    s = sub.add_parser("demo", help="sample the shipped teacher on several prompts")
    s.add_argument("--out", type=output_folder, default="runs/demo")
    s.add_argument("--model", default="shapes-teacher")
    add_sampler_args(s)
    s.add_argument("--seed", type=whole_number, default=0)
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.shapes.generate import write_demo

    demo = write_demo(a.out, a.model, a.seed, sampler_overrides(a))
    for line in demo.clips:
        print(line)
    out = demo.folder
    print(f"demo videos in {out}/ (open {out}/grid.gif: top = the model's samples, bottom = ideal clips)")
