"""Stage III cost: one generator iteration in units of one teacher forward, with and without the
shared prefix of the pruned and unpruned real-score evaluations (FastLightGen's well-guided teacher).

    python benchmarks/dmd_cost.py [--model runs/dpp_alpha0.5/model] [--drop 4,5,6,7,13,14] [--batch-size 4]

Unit = one forward of the unpruned teacher on the batch (no CFG, no grad). Two columns, measured
side by side in one run (interleaved, warm-up, median of --repeats):
  forward-equivalents  block evaluations x samples, counted by hooks on every block of G, the critic
                       and the real score, divided by (teacher blocks x batch): the work model,
                       forwards only (a backward costs about twice its forward and is not counted)
  time ratio           wall time of one `DmdRecipe.step` + backward divided by the unit's wall time
Both for a generator iteration (exit step k fixed at 1: one no-grad G step of backward simulation)
and, for reference, a critic-only iteration.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fastlight.analyze.plans import depth_plan, write_plan
from fastlight.distill.dmd import DmdConfig, DmdRecipe
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path


def make_plan(model_path: Path, drop: list[int], out: Path) -> Path:
    """A depth plan for exactly `drop` (scores 0 on them, 1 elsewhere; ratio = their parameter share)."""
    own = model_path / "plan.json"
    if not drop and own.exists():
        return own
    model = load_denoiser(model_path)
    rows = [{"index": i, "score": 0.0 if i in drop else 1.0} for i in range(model.num_blocks)]
    ratio = (model.num_params() - model.num_params(skip=drop)) / model.num_params()
    plan = depth_plan(rows, model, ratio - 1e-9, keep_ends=False, verbose=False)
    assert sorted(plan["drop_blocks"]) == sorted(drop), plan["drop_blocks"]
    return write_plan(out, plan)


class BlockCounter:
    """Counts samples through every block of the given denoisers (forward pre-hooks)."""

    def __init__(self, *denoisers):
        self.samples = 0
        for d in denoisers:
            for blk in d.model.blocks:
                blk.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.samples += args[0].shape[0]


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shapes-teacher", help="Stage II model folder (or shapes-teacher)")
    ap.add_argument("--drop", default="4,5,6,7,13,14", help="blocks pruned in G (the 30%% plan of the shipped teacher)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    model_path = resolve_model_path(a.model)
    drop = [int(i) for i in a.drop.split(",") if i.strip()]
    tmp = Path(tempfile.mkdtemp())
    plan = make_plan(model_path, drop, tmp / "plan.json")
    recipes = {}
    for shared in (True, False):
        cfg = DmdConfig(out=str(tmp / f"run_{shared}"), teacher=str(model_path), plan=str(plan), batch_size=a.batch_size,
                        shared_prefix=shared, critic_steps=5, cpu=True)
        recipes[shared] = DmdRecipe(cfg)
    r = recipes[True]
    n_blocks = r.real.num_blocks
    batch = r.batch(0)
    batch["k"] = 1
    cond = Cond(batch["text"], batch.get("image"))
    x = batch["noise"]
    s = torch.full((a.batch_size,), 0.6)

    def unit():
        with torch.no_grad():
            r.real(x, s, cond)

    def iteration(recipe, b, step):
        """One optimizer step's work: the recipe's forwards and the backward of the losses it returns."""
        def run():
            for m in (recipe.G, recipe.critic):
                m.zero_grad(set_to_none=True)
            out = recipe.step(b, step)
            sum(out[k] for k in ("loss", "critic") if k in out).backward()
        return run

    cases = {"teacher forward (unit)": unit,
             "generator iteration, shared prefix": iteration(recipes[True], batch, 0),
             "generator iteration, no sharing": iteration(recipes[False], batch, 0),
             "critic-only iteration": iteration(recipes[True], batch, 1)}  # step 1: not a generator step
    counts = {}
    for name, fn in cases.items():
        rec = recipes[False] if "no sharing" in name else recipes[True]
        counter = BlockCounter(rec.G, rec.critic, rec.real)
        fn()  # warm-up, and the block count of one call
        counts[name] = counter.samples / (n_blocks * a.batch_size)
        for d in (rec.G, rec.critic, rec.real):
            for blk in d.model.blocks:
                blk._forward_pre_hooks.clear()
    times = {name: [] for name in cases}
    for _ in range(a.repeats):  # interleaved
        for name, fn in cases.items():
            times[name] += timed(fn, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    u = med["teacher forward (unit)"]
    rows = [{"case": k, "forward_equivalents": round(counts[k], 3), "time_s": round(med[k], 4),
             "time_in_teacher_forwards": round(med[k] / u, 2)} for k in cases]
    saved = 1 - counts["generator iteration, shared prefix"] / counts["generator iteration, no sharing"]
    print(f"model {model_path}, G drops {drop} ({r.G.num_blocks}/{n_blocks} blocks), batch {a.batch_size}, "
          f"shared prefix = blocks 0..{r.real.shared_prefix_blocks([drop, ()]) - 1}, CPU threads {torch.get_num_threads()}")
    print(f"{'case':40s} {'forward-equiv.':>14s} {'time (s)':>9s} {'time / unit':>11s}")
    for row in rows:
        print(f"{row['case']:40s} {row['forward_equivalents']:14.3f} {row['time_s']:9.4f} {row['time_in_teacher_forwards']:11.2f}")
    speed = med["generator iteration, no sharing"] / med["generator iteration, shared prefix"]
    print(f"sharing saves {saved:.1%} of the generator iteration's block evaluations; measured time ratio "
          f"no-sharing / shared = {speed:.3f}")
    res = {"rows": rows, "block_evals_saved": saved, "time_speedup": speed}
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
