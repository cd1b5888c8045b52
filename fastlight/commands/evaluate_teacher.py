"""`fastlight evaluate-teacher`: the teacher's quality bar on held-out cases (oracle)."""
from __future__ import annotations

from fastlight.commands.options import add_sampler_args, output_file, sampler_overrides, whole_number


def add_parser(sub) -> None:
    s = sub.add_parser("evaluate-teacher", help="the teacher's quality bar on held-out cases (oracle)")
    s.add_argument("--model", default="shapes-teacher")
    s.add_argument("--num-cases", type=whole_number, default=320)
    add_sampler_args(s)
    s.add_argument("--seed", type=whole_number, default=10_000)
    s.add_argument("--out", type=output_file, default=None, help="write the figures as JSON here")
    s.add_argument("--record", action="store_true", help="also store the figures in the model's fastlight.json")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.shapes.teacher_eval import evaluate_teacher

    evaluate_teacher(a.model, a.num_cases, a.seed, a.out, record=a.record, overrides=sampler_overrides(a))
