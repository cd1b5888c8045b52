"""`fastlight run RECIPE.yaml [key=value ...]` and `fastlight search`: the work lives in `fastlight/run/`."""
from __future__ import annotations

from pathlib import Path

from fastlight.commands.options import finite_float, float_list, output_folder, positive_int_list, whole_number


def run(a) -> None:
    from fastlight.run.pipeline import fmt_duration, run_from_config

    if a.dry_run is not None:
        return dry_run(a)
    only = None if a.only is None else [s.strip() for s in a.only.split(",") if s.strip()]  # "" and "," name no stage: refused
    state = run_from_config(a.config, a.overrides, only)
    report = state["stages"].get("report", {}).get("summary", {}).get("markdown")
    print(f"\n{state['headline']}")
    if report:
        html = Path(report).with_suffix(".html")
        print(f"report: {report}" + (f" (and {html})" if html.exists() else ""))
    print(f"run folder: {state['out']} ({fmt_duration(state['total_wall_s'])} of stage time)")


def add_parser(sub) -> None:
    s = sub.add_parser("run", help="the whole compression (Stage I -> II -> III -> evaluate -> bench -> report), resumable")
    s.add_argument("config", help="run recipe, e.g. configs/shapes/fastlightgen.yaml, configs/wan/wan21_t2v_1.3b.yaml")
    s.add_argument("overrides", nargs="*", help="key=value (preset=full, out=..., stage2.steps=100, stage3.lr=1e-5; "
                   "a pipeline teacher: teacher=PIPELINE data=SHARDS or synthesize.prompts=FILE, eval.prompts=FILE)")
    s.add_argument("--only", default=None, help="comma list of stages to run now (e.g. evaluate,bench,report)")
    # nargs="*": key=value overrides may follow the flag too (`run CONFIG --dry-run out=X`), which argparse
    # would otherwise refuse once the positional overrides are behind it
    s.add_argument("--dry-run", nargs="*", default=None, metavar="KEY=VALUE",
                   help="print the stages and a per-GPU memory plan of the teacher; run and write nothing")
    s.add_argument("--num-gpus", type=whole_number, default=8, help="--dry-run: GPUs the models are sharded over (FSDP2)")
    s.add_argument("--gpu-memory-gb", type=finite_float, default=80.0, help="--dry-run: memory of one GPU")
    s.add_argument("--offload", choices=("none", "params", "optimizer", "both"), default="none",
                   help="--dry-run: CPU offload of parameters and/or optimizer state")
    s.add_argument("--shape", default=None, help="--dry-run: FRAMES,HEIGHT,WIDTH of a video (default: the "
                   "recipe's eval/synthesize size for a pipeline teacher, the teacher's world, else 81,480,832)")
    s.set_defaults(fn=run)
    add_search_parser(sub)


def run_search(a) -> None:
    from fastlight.run.search import search_plans

    doc = search_plans(a.model, a.budget_ms, a.importance, a.out, a.steps, a.ratios, a.num_cases, a.guidance, a.repeats,
                       a.seed, a.test_cases)
    print_search(doc)
    print(f"wrote {Path(a.out) / 'search.json'} and {Path(a.out) / 'search.png'}")


def print_search(doc: dict) -> None:
    """The design space table (Pareto front and pick marked) and the recommendation of a search.json document."""
    from rich.console import Console
    from rich.table import Table

    best, budget, n = doc["recommendation"], doc["budget_ms"], doc["num_cases"]
    t = Table(title=f"design space on {n} validation cases (Pareto front marked *), budget {budget:g} ms")
    for c in ("steps", "pruned", "score (validation)", "95% interval", "direction", "pred. ms", ""):
        t.add_column(c, no_wrap=True)
    for x in sorted(doc["rows"], key=lambda x: x["pred_ms"]):
        t.add_row(str(x["steps"]), f"{x['removed']:.0%}", f"{x['score']:.3f}", f"[{x['interval'][0]:.3f}, {x['interval'][1]:.3f}]",
                  "-" if x["direction"] is None else f"{x['direction']:.2f}", f"{x['pred_ms']:.0f}",
                  ("*" if x["pareto"] else "") + (" <- pick" if x == best else ""))
    Console().print(t)
    if best is None:
        cheapest = min(doc["rows"], key=lambda x: x["pred_ms"])
        print(f"nothing fits {budget:g} ms: the cheapest pair ({cheapest['steps']} steps, "
              f"{cheapest['removed']:.0%} pruned) needs {cheapest['pred_ms']:.0f} ms")
        return
    test, kind = doc["test"], doc["sampler"]["sampler"]
    print(f"recommended under {budget:g} ms (chosen on {n} validation cases): {best['steps']} "
          f"{kind.replace('_', '-')} steps with {best['removed']:.0%} of the parameters removed (skip {best['skip']}), "
          f"predicted {best['pred_ms']:.0f} ms per video. ShapesBench on {doc['test_cases']} test cases: {test['score']:.3f} "
          f"[{test['interval']['low']:.3f}, {test['interval']['high']:.3f}] (95%; validation {best['score']:.3f}). "
          "A Stage III DMD run at that depth cuts the steps further.")


def add_search_parser(sub) -> None:
    s = sub.add_parser("search", help="(steps, prune ratio) quality-vs-cost front of an elastic Stage II model")
    s.add_argument("model", help="Stage II (dpp) model folder, e.g. runs/fastlightgen/3_stage2/model")
    s.add_argument("--budget-ms", type=finite_float, required=True, help="time budget per video on this machine")
    s.add_argument("--importance", default=None, help="Stage I importance.json (default: the run's 1_analyze/)")
    s.add_argument("--out", type=output_folder, default="runs/search")
    s.add_argument("--steps", type=positive_int_list, default="2,4,8,16,32")
    s.add_argument("--ratios", type=float_list, default="0,0.1,0.2,0.3,0.4,0.5")
    s.add_argument("--num-cases", type=whole_number, default=16, help="validation cases per pair (what the pick is chosen on)")
    s.add_argument("--test-cases", type=whole_number, default=320, help="test cases the pick is re-scored on (what is reported)")
    s.add_argument("--guidance", "--cfg", dest="guidance", type=finite_float, default=None,
                   help="override the model's own sampler's guidance (default: its own; Stage II models: 4)")
    s.add_argument("--repeats", type=whole_number, default=5)
    s.add_argument("--seed", type=whole_number, default=0)
    s.set_defaults(fn=run_search)


def dry_run(a) -> None:
    """`fastlight run CONFIG --dry-run`: the stages it would run and the teacher's per-GPU memory plan."""
    from fastlight.config import load_config, parse_overrides
    from fastlight.models.load import resolve_model_path
    from fastlight.run.memory import PRESETS, geometry, memory_plan
    from fastlight.run.pipeline import (Run, RunConfig, check_stage_configs, eval_options, is_pipeline_teacher, resolve,
                                        split_overrides, stages)

    shape = _shape(a.shape)
    _check_machine(a)
    plain, nested = split_overrides(list(a.overrides) + list(a.dry_run))
    cfg = resolve(load_config(RunConfig, a.config, plain), frozenset(parse_overrides(plain)), nested)
    plan, run = stages(cfg), Run(cfg)
    names = [st.name for st in plan]
    check_stage_configs(run, names)  # a bad stage2./stage3. key fails here as it would in the real run
    print(f"fastlight run {a.config} (method {cfg.method}, preset {cfg.preset}, out {cfg.out}): dry run, nothing written")
    for i, st in enumerate(plan, 1):
        print(f"  {i}. {st.name:<10} {st.what}")
    teacher = cfg.teacher if cfg.teacher in PRESETS else resolve_model_path(cfg.teacher)
    if not Path(teacher).exists() and cfg.geometry:  # a real-model recipe planned before the model is downloaded
        print(f"teacher {cfg.teacher} is not on this machine: planning the {cfg.geometry} geometry (geometry=)")
        teacher = cfg.geometry
    if shape == [None] * 3 and is_pipeline_teacher(cfg):  # the recipe's own video size
        o = eval_options(cfg)
        shape = [o["num_frames"], o["height"], o["width"]]
    geo = geometry(teacher)
    plans = [memory_plan(geo, [stage], opts) for stage, opts in _stage_options(a, cfg, run, names, shape)]
    print_plan(plans, str(teacher) if teacher == cfg.geometry else cfg.teacher)


def _stage_options(a, cfg, run, names: list[str], shape: list) -> list:
    """(stage, PlanOptions) for each planned stage, from the stage's own typed recipe config (its
    mixed_precision, gradient_checkpointing, ema_decay, batch_size / (grad_accum x GPUs) per GPU)."""
    from fastlight.run.memory import PlanOptions
    from fastlight.run.pipeline import stage2_config, stage2_recipe, stage3_config

    loops = {"stage2": stage2_config(run)[1] if "3_stage2" in names else None,
             "stage3": stage3_config(run)[1] if "4_stage3" in names else None}
    common = dict(num_gpus=a.num_gpus, gpu_memory_gb=a.gpu_memory_gb, frames=shape[0], height=shape[1], width=shape[2],
                  offload_params=a.offload in ("params", "both"), offload_optimizer=a.offload in ("optimizer", "both"),
                  prune_ratio=cfg.prune_ratio, method="dmd2" if cfg.method in ("dmd2", "lightning") else "fastlightgen",
                  stage2_recipe=stage2_recipe(cfg))
    out = []
    for stage, name in (("analyze", "1_analyze"), ("stage2", "3_stage2"), ("stage3", "4_stage3")):
        if name not in names:
            continue
        loop = loops.get(stage) or loops["stage2"] or loops["stage3"]  # analyze: the run's training precision
        per_gpu = getattr(loop, "batch_size", 1) // (max(1, getattr(loop, "grad_accum", 1)) * a.num_gpus)
        out.append((stage, PlanOptions(**common, mixed_precision=getattr(loop, "mixed_precision", "no"),
                                       gradient_checkpointing=bool(getattr(loop, "gradient_checkpointing", False)),
                                       ema=getattr(loop, "ema_decay", 0) > 0, samples_per_gpu=max(1, per_gpu))))
    return out


def _shape(text: str | None) -> list:
    """--shape FRAMES,HEIGHT,WIDTH -> [f, h, w]; None -> [None] * 3 (the teacher's default)."""
    if not text:
        return [None] * 3
    from fastlight.errors import InputError

    try:
        shape = [int(x) for x in text.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"--shape {text!r}: give FRAMES,HEIGHT,WIDTH, e.g. --shape 81,480,832")
    return shape


def _check_machine(a) -> None:
    from fastlight.errors import InputError

    if a.num_gpus < 1:
        raise InputError(f"--num-gpus must be >= 1, got {a.num_gpus}; e.g. --num-gpus 8")
    if a.gpu_memory_gb <= 0:
        raise InputError(f"--gpu-memory-gb must be > 0, got {a.gpu_memory_gb:g}; e.g. --gpu-memory-gb 80")


def _gib(x: float) -> str:
    return f"{x:9.2f}" if x >= 0.1 or x == 0 else f"{x:9.1e}"  # the Shapes teacher's bytes stay visible


def print_plan(plans: list, teacher: str) -> None:
    """The stages' memory plans (one row each) as a table, GiB per GPU."""
    if not plans:
        print("\nno stage of this method holds a model worth a memory plan")
        return
    p, o = plans[0], plans[0].options
    f, h, w = p.shape
    offload = [k for k, on in (("params", o.offload_params), ("optimizer", o.offload_optimizer)) if on]
    print(f"\nmemory per GPU for {teacher} ({p.num_params:,} parameters, counted exactly; {f}x{h}x{w} video = "
          f"{p.tokens} tokens) on {o.num_gpus} x {o.gpu_memory_gb:g} GB, FSDP2, CPU offload {'+'.join(offload) or 'none'}")
    print(f"{'stage':<8} {'precision':>9} {'ckpt':>4} {'samples':>7} {'weights':>9} {'grads':>9} {'optimizer':>10} "
          f"{'activ.*':>9} {'total':>9} {'host':>9}  fits  models")
    for plan in plans:
        r, ro = plan.rows[0], plan.options
        cells = [_gib(x) for x in (r.weights_gib, r.grads_gib, r.optimizer_gib, r.activations_gib, r.total_gib, r.host_gib)]
        cells[2] = " " + cells[2]
        print(f"{r.stage:<8} {ro.mixed_precision:>9} {'on' if ro.gradient_checkpointing else 'off':>4} "
              f"{ro.samples_per_gpu:>7} {' '.join(cells)}  {'yes' if r.fits else 'NO ':<4}  {r.models}")
    print("GiB per GPU; samples: per GPU per micro-batch; * activations are an estimate (fastlight/run/memory.py "
          "says how); leave 10-20% headroom")
