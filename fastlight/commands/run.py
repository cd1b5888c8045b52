"""`fastlight run RECIPE.yaml [key=value ...]` and `fastlight search`: the work lives in `fastlight/run/`."""
from __future__ import annotations

from fastlight.commands.options import finite_float, float_list, output_folder, positive_int_list, whole_number


def run(a) -> None:
    from fastlight.run.pipeline import run_command

    only = [s.strip() for s in a.only.split(",") if s.strip()] if a.only else None
    run_command(a.config, a.overrides, only)


def add_parser(sub) -> None:
    s = sub.add_parser("run", help="the whole compression (Stage I -> II -> III -> evaluate -> bench -> report), resumable")
    s.add_argument("config", help="run recipe, e.g. configs/shapes/fastlightgen.yaml")
    s.add_argument("overrides", nargs="*", help="key=value (preset=full, out=..., stage2.steps=100, stage3.lr=1e-5)")
    s.add_argument("--only", default=None, help="comma list of stages to run now (e.g. evaluate,bench,report)")
    s.set_defaults(fn=run)
    add_search_parser(sub)


def run_search(a) -> None:
    from fastlight.run.search import search_command

    search_command(a.model, a.budget_ms, a.importance, a.out, a.steps, a.ratios, a.num_cases, a.guidance, a.repeats, a.seed,
                   a.test_cases)


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
