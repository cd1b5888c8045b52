"""`fastlight run RECIPE.yaml [key=value ...]` and `fastlight search`: the work lives in `fastlight/run/`."""
from __future__ import annotations

from pathlib import Path

from fastlight.commands.options import finite_float, float_list, output_folder, positive_int_list, whole_number


def run(a) -> None:
    from fastlight.run.pipeline import fmt_duration, run_from_config

    only = None if a.only is None else [s.strip() for s in a.only.split(",") if s.strip()]  # "" and "," name no stage: refused
    state = run_from_config(a.config, a.overrides, only)
    report = state["stages"].get("report", {}).get("summary", {}).get("markdown")
    print(f"\n{state['headline']}")
    if report:
        print(f"report: {report} (and {Path(report).with_suffix('.html')})")
    print(f"run folder: {state['out']} ({fmt_duration(state['total_wall_s'])} of stage time)")


def add_parser(sub) -> None:
    s = sub.add_parser("run", help="the whole compression (Stage I -> II -> III -> evaluate -> bench -> report), resumable")
    s.add_argument("config", help="run recipe, e.g. configs/shapes/fastlightgen.yaml")
    s.add_argument("overrides", nargs="*", help="key=value (preset=full, out=..., stage2.steps=100, stage3.lr=1e-5)")
    s.add_argument("--only", default=None, help="comma list of stages to run now (e.g. evaluate,bench,report)")
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
