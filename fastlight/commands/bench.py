"""`fastlight bench --model SPEC ...`: end-to-end time per video of several models, side by side;
`fastlight bench --pipeline PIPE[:steps=N,guidance=G] ...`: the same for diffusers pipeline folders
(the stock teacher against the exported student), timed on their real `pipe(...)` call."""
from __future__ import annotations

from fastlight.commands.options import output_file, whole_number
from fastlight.errors import UsageError

DEFAULT_PROMPT = "a dog runs through a field of tall grass on a sunny afternoon"
PIPELINE_ONLY = ("prompt", "num_frames", "height", "width", "dtype", "max_calls")


def add_parser(sub) -> None:
    s = sub.add_parser("bench", help="end-to-end time per video of several models or pipelines, side by side")
    s.add_argument("--model", action="append", default=None,
                   help="PATH_OR_PRESET[:sampler=euler|few_step,steps=N,guidance=W,shift=S,timesteps=1000+750+500+250,"
                        "skip=1+2] (repeat); without options, the model's own sampler (its sampler.json)")
    s.add_argument("--pipeline", action="append", default=None,
                   help="PIPELINE_FOLDER[:steps=N,guidance=G] (repeat; the first is the baseline): a diffusers "
                        "pipeline folder (model_index.json), e.g. the stock teacher and the folder `fastlight export "
                        "--format diffusers` wrote; without options, its fastlight_export.json call, else the "
                        "pipeline's defaults")
    s.add_argument("--prompt", action="append", default=None,
                   help=f"--pipeline: a prompt (repeat; one video each per run; default {DEFAULT_PROMPT!r})")
    s.add_argument("--num-frames", type=whole_number, default=None, help="--pipeline: frames per video (default 81)")
    s.add_argument("--height", type=whole_number, default=None, help="--pipeline: height in pixels (default 480)")
    s.add_argument("--width", type=whole_number, default=None, help="--pipeline: width in pixels (default 832)")
    s.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="--pipeline: weights dtype (default bfloat16 on CUDA, float32 on CPU)")
    s.add_argument("--max-calls", type=whole_number, default=None,
                   help="--pipeline: a pipeline much cheaper than the slowest runs up to this many times per timed "
                        "round, for a steadier median (default 5; 1: once per round)")
    s.add_argument("--batch-size", type=whole_number, default=None, help="--model: videos per batch (default 1)")
    s.add_argument("--repeats", type=whole_number, default=None, help="timed rounds (default 5 models, 3 pipelines)")
    s.add_argument("--warmup", type=whole_number, default=1)
    s.add_argument("--out", type=output_file, default=None, help="write the rows as JSON here")
    s.add_argument("--device", default=None)
    s.add_argument("--seed", type=whole_number, default=0)
    s.set_defaults(fn=run)


def _check_mode(a) -> None:
    if a.model and a.pipeline:
        raise UsageError("--model and --pipeline cannot be mixed; bench fastlight model folders with "
                         "--model or diffusers pipeline folders with --pipeline, in separate runs")
    if not a.model and not a.pipeline:
        raise UsageError("give --model SPEC (fastlight model folders) or --pipeline FOLDER "
                         "(diffusers pipeline folders), at least one")
    if a.model:
        given = [f"--{k.replace('_', '-')}" for k in PIPELINE_ONLY if getattr(a, k) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: for --pipeline only; drop {'them' if len(given) > 1 else 'it'} "
                             "with --model")
    elif a.batch_size is not None:
        raise UsageError("--batch-size applies to --model only; --pipeline generates one video per "
                         "prompt and call (give several --prompt)")


def _or(value, default):
    """The option's value, or its default when not given (0 is a value, refused downstream)."""
    return default if value is None else value


def run(a) -> None:
    _check_mode(a)
    if a.pipeline:
        return run_pipelines(a)
    from fastlight.evaluate.bench import bench_models
    from fastlight.evaluate.bench_table import print_rows

    rows = bench_models(a.model, _or(a.batch_size, 1), _or(a.repeats, 5), a.warmup, a.out, a.device, a.seed)
    print_rows(rows)
    if a.out:
        print(f"results written to {a.out}")


def run_pipelines(a) -> None:
    from fastlight.evaluate.pipeline_bench import MAX_CALLS, bench_pipelines, parse_pipeline_spec, print_table

    entries = [parse_pipeline_spec(s) for s in a.pipeline]  # every spec checked before loading anything
    rows = bench_pipelines(entries, _or(a.prompt, [DEFAULT_PROMPT]), num_frames=_or(a.num_frames, 81),
                           height=_or(a.height, 480), width=_or(a.width, 832), repeats=_or(a.repeats, 3), warmup=a.warmup,
                           seed=a.seed, device=a.device, out_json=a.out, dtype=a.dtype,
                           max_calls=_or(a.max_calls, MAX_CALLS))
    print_table(rows)
    if a.out:
        print(f"results written to {a.out}")
