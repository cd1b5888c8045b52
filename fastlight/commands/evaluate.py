"""`fastlight evaluate MODEL`: ShapesBench (+ VBench-style dimensions) of a Shapes model; with
`--pipeline PIPE --prompts prompts.txt`, a real (Wan or HunyuanVideo) model against its teacher on the pipeline
(`fastlight.evaluate.real.evaluate_on_pipeline`): videos, VBench-style proxies, motion, the
student/teacher motion ratio and a Frechet distance in the teacher's feature space, each with its
95% interval. A pipeline whose world has an oracle (a Shapes pipeline folder) needs no prompts: without
--prompts it is evaluated on the oracle's first --num-cases TEST cases (default 320) and every model also gets
the oracle's score with its interval and the paired difference against the reference (the same cases, noise
and scores as `fastlight run`'s evaluate stage with the same seed, samplers and eval_cases)."""
from __future__ import annotations

from pathlib import Path

from fastlight.commands.options import (add_sampler_args, block_ids, finite_float, int_list, output_folder,
                                        sampler_overrides, whole_number)
from fastlight.errors import InputError

SHAPES_CASES = 320
# the real-pipeline defaults: Wan 2.1's 81 frames at 480x832; the stock pipeline's 50 Euler steps and its
# guidance (Wan 5; HunyuanVideo 1: true CFG off, its embedded guidance 6 is applied by the evaluation)
REAL_FRAMES, REAL_HEIGHT, REAL_WIDTH = 81, 480, 832
REFERENCE_STEPS, REFERENCE_GUIDANCE = 50, 5.0
REAL_ONLY = ("prompts", "images", "reference", "reference_steps", "reference_guidance", "num_frames", "height",
             "width", "device", "max_text_len", "batch_size")
SHAPES_ONLY = ("num_cases", "skip", "no_vbench")


def add_parser(sub) -> None:
    s = sub.add_parser("evaluate", help="ShapesBench of a Shapes model, or (--pipeline) a real model against its "
                                        "teacher on prompts")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--out", type=output_folder, default="runs/evaluate")
    add_sampler_args(s)
    s.add_argument("--seed", type=whole_number, default=0)
    s.add_argument("--no-videos", action="store_true")
    shapes = s.add_argument_group("ShapesBench (without --pipeline)")
    shapes.add_argument("--num-cases", type=whole_number, default=None,
                        help=f"test cases (default {SHAPES_CASES}); also a Shapes pipeline's (--pipeline, no --prompts)")
    shapes.add_argument("--skip", type=int_list, default=None, help="comma list of block ids to skip")
    shapes.add_argument("--no-vbench", action="store_true", default=None)
    real = s.add_argument_group("real pipelines")
    real.add_argument("--pipeline", default=None,
                      help="the teacher's diffusers pipeline folder (Wan 2.1 T2V, Wan 2.2 TI2V, HunyuanVideo T2V): "
                           "its text encoder(s), VAE and transformer are used")
    real.add_argument("--prompts", default=None, help="text file, one evaluation prompt a line (# comments skipped)")
    real.add_argument("--images", default=None, help="TI2V: folder of first frames named by prompt number (0.png, ...)")
    real.add_argument("--reference", default=None, help="the reference (teacher) model folder (default: the "
                                                        "pipeline's transformer/)")
    real.add_argument("--reference-steps", type=whole_number, default=None,
                      help=f"the reference's Euler steps (default: its sampler.json, else {REFERENCE_STEPS})")
    real.add_argument("--reference-guidance", type=finite_float, default=None,
                      help=f"the reference's guidance (default: its sampler.json, else the stock pipeline's: Wan "
                           f"{REFERENCE_GUIDANCE:g}, HunyuanVideo 1)")
    real.add_argument("--num-frames", type=whole_number, default=None, help=f"default {REAL_FRAMES}")
    real.add_argument("--height", type=whole_number, default=None, help=f"default {REAL_HEIGHT}")
    real.add_argument("--width", type=whole_number, default=None, help=f"default {REAL_WIDTH}")
    real.add_argument("--max-text-len", type=whole_number, default=None, help="prompt tokens kept (default the "
                       "pipeline folder's own text length, e.g. a Shapes folder's 16, else Wan 512, HunyuanVideo 256)")
    real.add_argument("--batch-size", type=whole_number, default=None, help="prompts sampled at a time (default 1)")
    real.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    s.set_defaults(fn=run)


def _given(a, names) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names if getattr(a, n) is not None]


def run(a) -> None:
    if a.pipeline is None:
        given = _given(a, REAL_ONLY)
        if given:
            raise InputError(f"{given[0]} applies to real pipelines: add --pipeline PIPE (the teacher's diffusers "
                             "folder), or drop it for ShapesBench")
        return run_shapes(a)
    given = [g for g in _given(a, SHAPES_ONLY) if g != "--num-cases"]  # --num-cases: a pipeline's oracle cases
    if given:
        raise InputError(f"{given[0]} applies to ShapesBench; with --pipeline the prompts file sets the cases: drop it")
    return run_real(a)


def run_shapes(a) -> None:
    from fastlight.shapes.bench import evaluate_model

    skip = block_ids(a.skip or [])
    res = evaluate_model(a.model, a.out, overrides=sampler_overrides(a),
                         num_cases=SHAPES_CASES if a.num_cases is None else a.num_cases, seed=a.seed,
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


# ----------------------------------------------------------------------------- real pipelines
def reference_sampler(folder: Path, pipeline: Path, steps: int | None, guidance: float | None,
                      family: str = "wan"):
    """The reference's sampler: its own sampler.json when it has one and nothing is overridden, else the
    stock pipeline's Euler sampler (50 steps, its guidance: Wan 5, HunyuanVideo 1; the scheduler's shift)
    with the given overrides."""
    from fastlight.data.synthesize import FAMILY_DEFAULTS, pipeline_shift
    from fastlight.diffusion.spec import FILE, SamplerSpec, model_folder

    own = (model_folder(folder) or folder) / FILE
    if own.is_file() and steps is None and guidance is None:
        return SamplerSpec.load(own.parent)
    stock = REFERENCE_GUIDANCE if family == "wan" else FAMILY_DEFAULTS[family]["guidance"]
    return SamplerSpec.euler(REFERENCE_STEPS if steps is None else steps,
                             stock if guidance is None else guidance, pipeline_shift(pipeline))


def run_real(a) -> None:
    from fastlight.data.synthesize import pair_images, pipeline_family, read_prompts
    from fastlight.diffusion.spec import choose_sampler
    from fastlight.evaluate.real import (EVAL_FILE, check_eval_pipeline, evaluate_on_pipeline, evaluate_oracle_cases,
                                         pipeline_oracle)

    pipeline = Path(a.pipeline)
    index = check_eval_pipeline(pipeline)
    size = dict(num_frames=REAL_FRAMES if a.num_frames is None else a.num_frames,
                height=REAL_HEIGHT if a.height is None else a.height, width=REAL_WIDTH if a.width is None else a.width)
    oracle = pipeline_oracle(pipeline, **size, seed=a.seed) if a.prompts is None else None
    if a.prompts is None and oracle is None:
        raise InputError("--pipeline needs --prompts FILE (one evaluation prompt a line)")
    if a.num_cases is not None and oracle is None:
        raise InputError("--num-cases with --pipeline applies to a pipeline whose world has an oracle (a Shapes "
                         "pipeline) and no --prompts; drop it, the prompts file sets the cases")
    if oracle is not None and a.images is not None:
        raise InputError(f"--images: {pipeline}'s oracle gives the cases' first frames itself; drop --images")
    if a.images is not None and not index.get("expand_timesteps"):
        raise InputError(f"--images needs a TI2V pipeline (Wan 2.2 TI2V: expand_timesteps true in its "
                         f"model_index.json); {pipeline} is text-to-video: drop --images")
    prompts = None if oracle is not None else read_prompts(a.prompts)
    images = None if a.images is None else pair_images(a.images, len(prompts))
    reference = Path(a.reference) if a.reference is not None else pipeline / "transformer"
    if not reference.is_dir():
        raise InputError(f"--reference {reference} is not a folder; pass the teacher's model folder")
    if not Path(a.model).is_dir():
        raise InputError(f"model {a.model} is not a folder; pass the student's model folder (a run's model/ or an "
                         "exported pipeline)")
    ref_spec = reference_sampler(reference, pipeline, a.reference_steps, a.reference_guidance, pipeline_family(index))
    choice = choose_sampler(a.model, **sampler_overrides(a))
    ref_name = "teacher"
    name = Path(a.model).resolve().name or "student"
    name = "student" if name == ref_name else name
    print(f"reference {ref_name} ({reference}): {ref_spec.describe()}")
    print(f"{name}: {choice.line}")
    kw = {k: v for k, v in dict(device=a.device, max_text_len=a.max_text_len, batch_size=a.batch_size).items()
          if v is not None}
    models = {ref_name: (reference, ref_spec), name: (Path(a.model), choice.spec)}
    if oracle is not None:
        n = SHAPES_CASES if a.num_cases is None else a.num_cases
        print(f"{oracle.name}: {n} test cases of the pipeline's world (its prompts and first frames)")
        res = evaluate_oracle_cases(pipeline, models, oracle, n, a.out, **size, seed=a.seed, videos=not a.no_videos,
                                    **kw)
    else:
        res = evaluate_on_pipeline(pipeline, models, prompts, a.out, **size, seed=a.seed, images=images,
                                   videos=not a.no_videos, **kw)
    print(real_table(res))
    print(f"-> {Path(a.out) / EVAL_FILE}")


def _iv(d: dict | None, spec: str = ".3f") -> str:
    if not d or d.get("estimate") is None:
        return "n/a"
    return f"{d['estimate']:{spec}} [{d['low']:{spec}}, {d['high']:{spec}}]"


def real_table(res: dict) -> str:
    """The eval.json document as a small fixed-width table (95% intervals in brackets)."""
    names = list(res["models"])
    ref = res["reference"]
    rows = [("", *names), ("sampler", *(_sampler(res["models"][n]["sampler"]) for n in names)),
            ("motion (px/frame)", *(_iv(res["models"][n]["motion"]) for n in names)),
            ("motion ratio vs " + ref, *("1 (reference)" if n == ref else _iv(res["pairs"][n]["motion_ratio"])
                                          for n in names)),
            ("Frechet distance vs " + ref, *("0 (reference)" if n == ref else
                                             _iv(res["pairs"][n]["frechet_distance"], ".4g") for n in names))]
    for dim, entry in res["models"][ref]["proxies"].items():
        rows.append((f"{dim} ({entry['kind']})", *(_iv(res["models"][n]["proxies"][dim]) for n in names)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"{res['num_prompts']} prompts, {res['num_frames']} frames at {res['height']}x{res['width']}, "
                 f"seed {res['seed']}; intervals: 95% bootstrap over prompts")
    lines += [f"{k}: {v}" for k, v in res["backends"].items()]
    return "\n".join(lines + oracle_table(res.get("oracle")))


def oracle_table(orc: dict | None) -> list[str]:
    """The oracle's lines of the table: each row's score [95% interval] and row - reference (paired)."""
    if not orc:
        return []
    lines = [f"{orc['name']} ({orc['num_cases']} {orc.get('split', 'test')} cases; 95% intervals; paired: the same "
             "cases and noise):"]
    for n, m in orc["models"].items():
        pair = orc["pairs"].get(n)
        lines.append(f"  {n}: {_iv(m.get('interval'), '.4f') if m.get('interval') else format(m['score'], '.4f')}"
                     + ("" if pair is None else f"; - reference {_iv(pair['score'], '+.4f')}"))
    return lines


def _sampler(d: dict) -> str:
    if d["sampler"] == "euler":
        return f"euler {d['num_steps']} steps, w {d['guidance']:g}"
    return f"few_step {d['num_steps']} steps, w {d['guidance']:g}"
