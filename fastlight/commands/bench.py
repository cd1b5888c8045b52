"""`fastlight bench --model SPEC ...`: end-to-end time per video of several models, side by side."""
from __future__ import annotations

from fastlight.commands.options import output_file, whole_number


def add_parser(sub) -> None:
    s = sub.add_parser("bench", help="end-to-end time per video of several models, side by side")
    s.add_argument("--model", action="append", required=True,
                   help="PATH_OR_PRESET[:sampler=euler|few_step,steps=N,guidance=W,shift=S,timesteps=1000+750+500+250,"
                        "skip=1+2] (repeat); without options, the model's own sampler (its sampler.json)")
    s.add_argument("--batch-size", type=whole_number, default=1)
    s.add_argument("--repeats", type=whole_number, default=5)
    s.add_argument("--warmup", type=whole_number, default=1)
    s.add_argument("--out", type=output_file, default=None, help="write the rows as JSON here")
    s.add_argument("--device", default=None)
    s.add_argument("--seed", type=whole_number, default=0)
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.evaluate.bench import bench_models
    from fastlight.evaluate.bench_table import print_rows

    rows = bench_models(a.model, a.batch_size, a.repeats, a.warmup, a.out, a.device, a.seed)
    print_rows(rows)
    if a.out:
        print(f"results written to {a.out}")
