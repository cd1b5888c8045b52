"""`fastlight search MODEL --budget-ms T`: the quality-vs-cost design space of an elastic model.

A Stage II (dpp) model is one set of weights that runs at any depth, so every (sampling steps,
prune ratio) pair can be tried without training: for each prune ratio the blocks come from the
Stage I importance (`depth_plan`, ends kept: the same greedy plan `fastlight plan` writes), and
the model samples with its own sampler (its sampler.json; for a Stage II model the default Euler
sampler, guidance 4) at that step count and depth; `guidance` overrides the sampler's. Per pair:

  quality  ShapesBench score (with its 95% bootstrap interval) on `num_cases` VALIDATION cases
           (ShapesBench's validation stream): what the pick is chosen on
  cost     predicted ms per video = steps x (measured time of one forward at that depth, batch 1,
           cond + uncond batched when guided, median of `repeats`) + the measured fixed cost
           (text + decode);
           forwards are timed side by side in one run, interleaved over depths

Writes search.json and search.png (left: score over steps x parameters kept, the FastLightGen
Figure 1 contour, with the budget line; right: score vs predicted ms, the Pareto front and the
budget) and recommends the best-scoring pair within the budget. Selection on validation, report on
test: the pick is then scored once more on `test_cases` TEST cases (disjoint from the validation
ones), and that score, with its interval, is the one reported; the validation score of the winner
of a search is optimistic (it won a max over many noisy scores).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from rich.console import Console
from tqdm.auto import tqdm

from fastlight.analyze.importance import importance_rows, read_importance
from fastlight.analyze.io import atomic_savefig
from fastlight.analyze.plans import depth_plan
from fastlight.data import video
from fastlight.diffusion.spec import choose_sampler, override
from fastlight.errors import InputError, MissingFileError, ModelError
from fastlight.evaluate.metrics import pareto_front
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser, resolve_model_path
from fastlight.shapes import text
from fastlight.shapes.bench import DEFAULT_NUM_CASES, score_interval, shapesbench
from fastlight.shapes.generate import is_shapes_model, world_of

DEFAULT_STEPS = (2, 4, 8, 16, 32)
DEFAULT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def skips_for_ratios(model, rows: list[dict], ratios) -> dict[float, list[int]]:
    """prune ratio -> blocks to skip (greedy by importance, ends kept); 0 -> none."""
    out = {}
    for r in ratios:
        out[r] = [] if r == 0 else sorted(depth_plan(rows, model, r, keep_ends=True, verbose=False)["drop_blocks"])
    return out


@torch.inference_mode()
def forward_ms(model, skips: dict[float, list[int]], repeats: int = 5, guided: bool = True) -> dict[float, float]:
    """Median ms of one forward of one video per depth, interleaved; `guided`: batch 2 (cond + uncond)."""
    world = world_of(model)
    b = 2 if guided else 1
    x = torch.randn(b, 3, world.num_frames, world.size, world.size)
    cond = Cond(text.encode(["a red circle moving left quickly"] * b), torch.zeros(b, 3, 1, world.size, world.size))
    s = torch.full((b,), 0.5)
    times: dict[float, list[float]] = {r: [] for r in skips}
    for r, k in skips.items():  # warm-up
        model(x, s, cond, skip=k)
    for _ in range(repeats):
        for r, k in skips.items():
            t0 = time.perf_counter()
            model(x, s, cond, skip=k)
            times[r].append((time.perf_counter() - t0) * 1000)
    return {r: statistics.median(v) for r, v in times.items()}


def recommend(rows: list[dict], budget_ms: float) -> dict | None:
    """The best-scoring row whose predicted cost fits the budget (ties: the cheaper)."""
    fits = [r for r in rows if r["pred_ms"] <= budget_ms]
    return max(fits, key=lambda r: (r["score"], -r["pred_ms"])) if fits else None


def plot(rows: list[dict], steps, ratios, budget_ms: float, best: dict | None, path: Path, sampler: str = "euler") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kept = [1 - r for r in ratios]
    grid = np.array([[next(x["score"] for x in rows if x["steps"] == st and x["prune_ratio"] == r) for st in steps]
                     for r in ratios])
    cost = np.array([[next(x["pred_ms"] for x in rows if x["steps"] == st and x["prune_ratio"] == r) for st in steps]
                     for r in ratios])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    cs = a.contourf(steps, kept, grid, levels=12, cmap="viridis")
    fig.colorbar(cs, ax=a, label="ShapesBench score")
    if cost.min() <= budget_ms <= cost.max():
        a.contour(steps, kept, cost, levels=[budget_ms], colors="white", linestyles="--")
    a.set_xscale("log", base=2)
    a.set_xticks(list(steps), [str(s) for s in steps])
    a.set_xlabel(f"sampling steps ({sampler.replace('_', '-')})")
    a.set_ylabel("DiT parameters kept")
    a.set_title(f"quality; dashed: {budget_ms:g} ms budget")
    if best:
        a.plot(best["steps"], 1 - best["prune_ratio"], "r*", ms=14)
    pts = [(r["pred_ms"], r["score"]) for r in rows]
    front = pareto_front(pts, maximize_x=False)
    a_ms, a_sc = [p[0] for p in pts], [p[1] for p in pts]
    b.scatter(a_ms, a_sc, c=[r["prune_ratio"] for r in rows], cmap="plasma", s=28)
    fx = sorted(front, key=lambda i: pts[i][0])
    b.plot([pts[i][0] for i in fx], [pts[i][1] for i in fx], "k-", lw=1, label="Pareto front")
    b.axvline(budget_ms, color="grey", ls="--", label=f"budget {budget_ms:g} ms")
    if best:
        b.plot(best["pred_ms"], best["score"], "r*", ms=14, label=f"pick: {best['steps']} steps, {best['prune_ratio']:.0%} pruned")
    b.set_xscale("log")
    b.set_xlabel("predicted ms per video (this machine)")
    b.set_ylabel("ShapesBench score")
    b.legend(fontsize=8, loc="lower right")
    b.set_title("quality vs cost")
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return path


def search_plans(model_path: str, budget_ms: float, importance: str | None, out: str, steps=DEFAULT_STEPS,
                 ratios=DEFAULT_RATIOS, num_cases: int = 16, guidance: float | None = None, repeats: int = 5,
                 seed: int = 0, test_cases: int = DEFAULT_NUM_CASES, progress: bool = True) -> dict:
    """Score and time every (steps, prune ratio) pair, recommend the best one within `budget_ms`,
    write out/search.json and out/search.png (module doc); returns search.json's document, whose
    "recommendation" is one of its "rows" (None when nothing fits). `progress`: say what is searched
    with which sampler, and a bar."""
    if budget_ms <= 0:
        raise InputError(f"--budget-ms must be > 0, got {budget_ms}")
    if num_cases < 2 or test_cases < 2:
        raise InputError(f"--num-cases and --test-cases must be >= 2 (an interval needs 2 cases), got {num_cases}, {test_cases}")
    steps, ratios = sorted({int(s) for s in steps}), sorted({float(r) for r in ratios})
    if not steps or steps[0] < 1 or not ratios or not all(0 <= r < 1 for r in ratios):
        raise InputError(f"--steps must be >= 1 and --ratios in [0, 1), got {steps}, {ratios}")
    path = resolve_model_path(model_path)
    model = load_denoiser(path).eval()
    if not is_shapes_model(model):
        raise ModelError(f"{model_path} is not an embedded Shapes model; search scores with the Shapes oracle")
    choice = choose_sampler(path, guidance=guidance)
    base = choice.spec
    imp = Path(importance) if importance else _find_importance(path)
    rows_imp = importance_rows(read_importance(imp))
    skips = skips_for_ratios(model, rows_imp, ratios)
    if progress:
        console = Console()
        console.print(f"search {path}: steps {steps} x prune ratios {ratios} ({len(steps) * len(ratios)} pairs, "
                      f"{num_cases} validation cases each, the pick re-scored on {test_cases} test cases); blocks from {imp}")
        console.print(f"{choice.line}; its step count is what the search varies", soft_wrap=True)
    fwd = forward_ms(model, skips, repeats, guided=base.guidance != 1)
    fixed = _fixed_ms(model, repeats)
    rows = []
    pairs = [(r, st) for r in ratios for st in steps]
    for r, st in tqdm(pairs, desc="search", disable=not progress):
        spec = override(base, sampler=base.kind, num_steps=st)
        res = shapesbench(model, spec, num_cases, skip=skips[r], seed=seed, progress=False, vbench=False, split="validation")
        iv = score_interval(res)
        rows.append({"steps": st, "prune_ratio": r, "skip": skips[r], "params": model.num_params(skips[r]),
                     "removed": 1 - model.num_params(skips[r]) / model.num_params(), "score": round(res["score"], 4),
                     "interval": [round(iv.low, 4), round(iv.high, 4)],
                     "direction": res["parts"].get("direction"), "pred_ms": round(st * fwd[r] + fixed, 2)})
    front = pareto_front([(x["pred_ms"], x["score"]) for x in rows], maximize_x=False)
    for i, x in enumerate(rows):
        x["pareto"] = i in front
    best = recommend(rows, budget_ms)
    test = _test_score(model, base, best, test_cases, seed) if best else None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(rows, steps, ratios, budget_ms, best, out_dir / "search.png", base.kind)
    doc = {"model": str(path), "importance": str(imp), "budget_ms": budget_ms, "sampler": base.to_json(),
           "num_cases": num_cases, "selection_split": "validation", "test_cases": test_cases,
           "forward_ms": {str(k): round(v, 3) for k, v in fwd.items()}, "fixed_ms": round(fixed, 3),
           "rows": rows, "recommendation": best, "test": test}
    atomic_write_json(out_dir / "search.json", doc)
    return doc


def _test_score(model, base, best: dict, test_cases: int, seed: int) -> dict:
    """The pick's ShapesBench on TEST cases: the score that is reported (selection used validation)."""
    spec = override(base, sampler=base.kind, num_steps=best["steps"])
    res = shapesbench(model, spec, test_cases, skip=best["skip"], seed=seed, progress=False, vbench=False, split="test")
    return {"split": "test", "num_cases": test_cases, "score": res["score"], "interval": score_interval(res).to_json(),
            "parts": res["parts"]}


def _find_importance(model_dir: Path) -> Path:
    """The Stage I importance of a `fastlight run` folder (RUN/3_stage2/model -> RUN/1_analyze)."""
    for cand in (model_dir.parent.parent / "1_analyze" / "importance.json", model_dir / "importance.json"):
        if cand.exists():
            return cand
    raise MissingFileError(f"no importance.json found for {model_dir}; pass --importance (from `fastlight analyze`)")


@torch.inference_mode()
def _fixed_ms(model, repeats: int) -> float:
    """Text encoding + noise + uint8 conversion of one video (the per-video cost outside the network)."""
    world = world_of(model)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        text.encode(["a red circle moving left quickly"])
        x = torch.randn(1, 3, world.num_frames, world.size, world.size)
        video.to_uint8_frames(x[0].clamp(-1, 1), 1)
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)
