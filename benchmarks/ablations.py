"""The FastLightGen paper's findings, reproduced (or not) on the embedded Shapes world, in one table.

    python benchmarks/ablations.py --run runs/fastlightgen      # after `fastlight run configs/shapes/fastlightgen.yaml`

Reuses the run's Stage I importance, 30% plan, Stage II (dpp, alpha 0.5) model, Stage III student and
teacher evaluation; every other variant trains with the run's own stage settings (same steps, lr,
batch) into RUN/ablations/NAME/ and is skipped when already complete (re-running continues).

  importance   U-shaped block importance (paper: first and last blocks matter most)
  alpha        Stage II alpha = 1 / 0.5 / 0: Tweedie denoising error of the elastic model at the 30%
               plan on held-out clips (paper: alpha = 1 best)
  beta2        Stage III beta2 = 0 / 0.25 / 1: motion (oracle speed ratio, VBench-style dynamic
               degree) and direction accuracy (paper: 0 static, 1 abrupt, 0.25 best)
  teacher      real/fake scores initialised pruned vs unpruned (paper: pruned better)
  joint        4 steps at 30% pruned vs step-only DMD2 at 3 steps unpruned, about the same cost
  stage3       the Stage III student (4 steps) vs the Stage II model at 28 Euler steps + CFG, pruned
  ratio        prune ratio 30 / 50 / 70% (paper: quality falls sharply below 70% kept)

Every student is scored by ShapesBench on the run's held-out TEST cases (with 95% bootstrap
intervals) and timed by `fastlight bench` side by side with the teacher in one call; the Tweedie
errors use a held-out set from the VALIDATION stream. Writes RUN/ablations/ablations.json and
ablations.md.

**Verdicts** are paired tests at the 95% level (`fastlight.evaluate.stats`): two models scored on
the same cases with the same noise, bootstrap over cases of the difference. "A beats B" = the 95%
interval of score(A) - score(B) lies above 0 (`beats`); for alpha, of error(B) - error(A) over the
same held-out samples. A finding "reproduces" only when every comparison it makes holds:

  importance  first and last block each above twice the middle mean by more than 1.96 standard errors
  alpha       alpha = 1 has a lower error than alpha = 0.5 and alpha = 0
  beta2       beta2 = 0.25 beats beta2 = 0 and beta2 = 1
  teacher     pruned scores beat unpruned scores
  joint       the joint student beats step-only DMD2 at 3 steps (about the same cost)
  stage3      the Stage III student beats the 28-step Stage II model
  ratio       "falls sharply": score(30% plan) - score(50% plan) is above SHARP_DROP (0.05) at 95%
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from fastlight.diffusion.spec import SamplerSpec, override
from fastlight.evaluate.stats import LEVEL, Interval, bootstrap_interval, mean_of, paired_difference
from fastlight.fileio import atomic_write_json, atomic_write_text
from fastlight.models.load import resolve_model_path
from fastlight.run.pipeline import (Run, RunConfig, _train, bench_spec as spec, sampling_of, stage2_config, stage3_config,
                                    student_sampling)
from fastlight.shapes.bench import paired_intervals, score_interval

SHARP_DROP = 0.05  # the "ratio" finding: a drop of more than this, at the 95% level, is "sharp"

PAPER = {
    "importance": "U-shape: first and last blocks most important, middle redundant",
    "alpha": "alpha = 1 (distillation only) best",
    "beta2": "beta2 = 0 static, 1 abrupt; 0.25 best",
    "teacher": "pruned real/fake scores beat unpruned (0.829 vs 0.809 VBench avg.)",
    "joint": "joint step + size distillation beats step-only at equal cost",
    "stage3": "28-step pruned model markedly worse than the 4-step Stage III student",
    "ratio": "quality falls sharply when fewer than 70% of the parameters are kept",
}


class Study:
    def __init__(self, run_dir: Path, eval_cases: int | None):
        self.run = Run(RunConfig(**yaml.safe_load((run_dir / "config.yaml").read_text())))
        self.c = self.run.cfg
        self.root = run_dir / "ablations"
        self.eval_cases = eval_cases or self.c.eval_cases

    # ---- training variants (skipped when complete) ----
    def stage2(self, name: str, plan: str | None = None, **over) -> Path:
        """A Stage II model of the run's recipe into ROOT/name (reused when finished), `over` replacing the run's
        `stage2:` settings; alpha 0.5 where neither sets it (the run's own Stage II model is the alpha 0.5 row)."""
        out = self.root / name
        if (out / "model" / "fastlight.json").exists():
            return out / "model"
        over = {"alpha": self.c.stage2.get("alpha", 0.5), **over}
        return _train(*stage2_config(self.run, out, Path(plan) if plan else None, **over))

    def stage3(self, name: str, recipe: str = "fastlightgen", teacher: str | None = None, **over) -> Path:
        """A Stage III model into ROOT/name (reused when finished) from `teacher` (default the run's Stage II
        model), `over` replacing the run's `stage3:` settings."""
        out = self.root / name
        if (out / "model" / "fastlight.json").exists():
            return out / "model"
        return _train(*stage3_config(self.run, out, teacher or str(self.run.stage2_model), recipe, **over))

    # ---- measurements ----
    def shapesbench(self, name: str, model: Path | str, sampler: SamplerSpec | None = None, skip=()) -> dict:
        """ShapesBench of `model` with `sampler` (default: how the run samples it, `sampling_of`)."""
        from fastlight.shapes.bench import evaluate_model

        out = self.root / "eval" / name
        if (out / "shapesbench.json").exists():
            doc = json.loads((out / "shapesbench.json").read_text())
            if "per_case" in doc:  # older files (ShapesBench version 1) cannot be paired: re-evaluated
                return doc
        return evaluate_model(str(model), str(out), sampler or sampling_of(model, self.c), num_cases=self.eval_cases,
                              seed=self.c.seed, skip=skip, save_videos=False)

    def tweedie_errors(self, model: Path, skip) -> list[float]:
        """Per-sample Tweedie errors on 64 held-out samples of the VALIDATION stream (the same for every model)."""
        import torch

        from fastlight.analyze.importance import denoising_error, tweedie_x0
        from fastlight.models.load import load_denoiser
        from fastlight.shapes.bench import heldout_calibration

        m = load_denoiser(model).eval()
        calib = heldout_calibration(m, 64, seed=self.c.seed, split="validation")
        with torch.inference_mode():
            errs = torch.cat([denoising_error(tweedie_x0(m, b, skip), b.x0, b.cond.image is not None) for b in calib])
        return errs.tolist()

    def bench(self, specs: dict[str, str]) -> dict[str, float]:
        """name -> median seconds per video; all specs timed side by side in one call (teacher first)."""
        from fastlight.evaluate.bench import bench

        rows = bench(list(specs.values()), repeats=self.c.bench_repeats, warmup=1, seed=self.c.seed, progress=False)
        return {n: r["time_s"]["median"] for n, r in zip(specs, rows)}


def _paired_ready(path: Path) -> dict | None:
    """A ShapesBench result that carries per-case data (so it can be paired), or None."""
    doc = json.loads(path.read_text()) if path.exists() else None
    return doc if doc and "per_case" in doc else None


def motion(res: dict) -> dict:
    vb = res.get("vbench") or {}
    dd = vb.get("dynamic_degree", {}).get("score") if isinstance(vb.get("dynamic_degree"), dict) else None
    iv = score_interval(res)
    return {"score": res["score"], "interval": iv.to_json() if iv else None, "direction": res["parts"].get("direction"),
            "speed_ratio": res["metrics"].get("speed_ratio_mean"), "dynamic_degree": dd,
            "ghost": res["parts"].get("ghost")}


# ---- verdicts: paired tests at the 95% level ------------------------------------------------------
def beats(a: dict, b: dict, margin: float = 0.0, label: str = "") -> dict:
    """Does ShapesBench result `a` beat `b` (same cases and noise)? The paired 95% interval of
    score(a) - score(b) must lie above `margin`."""
    d = paired_intervals(a, b, LEVEL)["score"]
    return {"test": label or "A - B", "difference": d.to_json(), "margin": margin, "holds": d.low > margin}


def lower_error(errs_a, errs_b, label: str = "") -> dict:
    """Is model A's per-sample error lower than B's on the same samples? Paired 95% interval of
    mean(err_b) - mean(err_a) above 0."""
    d = paired_difference(mean_of("e"), {"e": np.asarray(errs_b)}, {"e": np.asarray(errs_a)}, LEVEL)
    return {"test": label or "err(B) - err(A)", "difference": d.to_json(), "margin": 0.0, "holds": d.low > 0}


def verdict(tests: list[dict]) -> dict:
    """A finding reproduces when every one of its paired tests holds."""
    return {"tests": tests, "reproduces": all(t["holds"] for t in tests)}


def importance_verdict(rows: list[dict]) -> dict:
    """U shape: the first and the last block each exceed twice the middle third's mean importance by
    more than 1.96 of their standard errors."""
    score = {r["index"]: r["score"] for r in rows}
    se = {r["index"]: r.get("stderr") or 0.0 for r in rows}
    n = len(score)
    middle = [score[i] for i in range(n // 3, n - n // 3)]
    mid = sum(middle) / len(middle)
    ends = {i: score[i] - 1.96 * se[i] > 2 * mid for i in (0, n - 1)}
    return {"first": score[0], "last": score[n - 1], "middle_mean": mid, "least": sorted(score, key=score.get)[:3],
            "rule": "first and last > 2 x middle mean + 1.96 stderr", "reproduces": all(ends.values())}


def _error_summary(errs) -> dict:
    iv = bootstrap_interval(mean_of("e"), {"e": np.asarray(errs)})
    return {"mean": iv.estimate, "interval": iv.to_json()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/fastlightgen", help="a finished `fastlight run` fastlightgen folder")
    ap.add_argument("--only", default=None, help="comma list of: " + ", ".join(PAPER))
    ap.add_argument("--eval-cases", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training (default: the run's)")
    a = ap.parse_args(argv)
    run_dir = Path(a.run)
    if not (run_dir / "run.json").exists() or not (run_dir / "4_stage3" / "model").exists():
        raise SystemExit(f"{run_dir} is not a finished fastlightgen run; run `fastlight run configs/shapes/fastlightgen.yaml` first")
    st = Study(run_dir, a.eval_cases)
    if a.threads:
        import torch

        st.c.threads = a.threads
        torch.set_num_threads(a.threads)
    only = set(a.only.split(",")) if a.only else set(PAPER)
    plan = json.loads(st.run.plan.read_text())
    drop = sorted(plan["drop_blocks"])
    student = st.run.stage3_model
    four = student_sampling(st.run)
    teacher_sampling = sampling_of(st.c.teacher, st.c)
    teacher_spec = spec(st.c.teacher, teacher_sampling)
    found: dict = {}
    t0 = time.time()

    if "importance" in only:
        rows = json.loads((run_dir / "1_analyze" / "importance.json").read_text())["blocks"]
        found["importance"] = importance_verdict(rows)

    if "alpha" in only:
        errs = {}
        for alpha in (1.0, 0.5, 0.0):
            model = st.run.stage2_model if alpha == 0.5 else st.stage2(f"dpp_alpha{alpha:g}", alpha=alpha)
            errs[alpha] = st.tweedie_errors(model, drop)
        errs["untrained"] = st.tweedie_errors(resolve_model_path(st.c.teacher), drop)
        best = min((1.0, 0.5, 0.0), key=lambda k: float(np.mean(errs[k])))
        found["alpha"] = {"error_at_plan": {str(k): _error_summary(v) for k, v in errs.items()}, "best": best,
                          **verdict([lower_error(errs[1.0], errs[0.5], "err(0.5) - err(1)"),
                                     lower_error(errs[1.0], errs[0.0], "err(0) - err(1)")])}

    if "beta2" in only or "teacher" in only:
        variants = {"beta2=0.25 (run)": student}
        if "beta2" in only:
            variants["beta2=0"] = st.stage3("dmd_beta2_0", guide_beta2=0.0)
            variants["beta2=1"] = st.stage3("dmd_beta2_1", guide_beta2=1.0)
        if "teacher" in only:
            variants["unpruned scores"] = st.stage3("dmd_unpruned_scores", score_init="unpruned")
        full = {k: st.shapesbench(k.replace(" ", "_").replace("(", "").replace(")", ""), m) for k, m in variants.items()}
        ms = {k: motion(v) for k, v in full.items()}
        run_key = "beta2=0.25 (run)"
        if "beta2" in only:
            b = {k: v for k, v in ms.items() if k.startswith("beta2")}
            found["beta2"] = {"rows": b, **verdict([beats(full[run_key], full["beta2=0"], label="0.25 - 0"),
                                                   beats(full[run_key], full["beta2=1"], label="0.25 - 1")])}
        if "teacher" in only:
            found["teacher"] = {"pruned": ms[run_key], "unpruned": ms["unpruned scores"],
                                **verdict([beats(full[run_key], full["unpruned scores"], label="pruned - unpruned")])}

    if "joint" in only or "stage3" in only:
        from fastlight.run.pipeline import teacher_eval_dir

        specs = {"teacher": teacher_spec, "joint 4 steps, 30% pruned": spec(student, four)}
        run_teacher = run_dir / teacher_eval_dir(st.c) / "shapesbench.json"
        res = {"joint 4 steps, 30% pruned": st.shapesbench("beta2=0.25_run", student),
               "teacher": _paired_ready(run_teacher) if st.eval_cases == st.c.eval_cases else None}
        res["teacher"] = res["teacher"] or st.shapesbench("teacher", st.c.teacher, teacher_sampling)
        if "joint" in only:  # the step-only DMD2 baseline at 4 steps (issue #5) and at 3 (about the joint's cost)
            for k, ts in ((4, [1000, 750, 500, 250]), (3, [1000, 667, 333])):
                dmd2 = st.stage3(f"dmd2_{k}steps", recipe="dmd2", teacher=st.c.teacher, timesteps=ts)
                specs[f"step-only {k} steps, unpruned"] = spec(dmd2, sampling_of(dmd2, st.c))
                res[f"step-only {k} steps, unpruned"] = st.shapesbench(f"dmd2_{k}steps", dmd2)
        if "stage3" in only:
            k28 = "Stage II, 28 Euler steps + CFG, pruned"
            euler28 = override(sampling_of(st.run.stage2_model, st.c), sampler="euler", num_steps=28)
            specs[k28] = spec(st.run.stage2_model, euler28, drop)
            res[k28] = st.shapesbench("stage2_28steps", st.run.stage2_model, euler28, skip=drop)
        times = st.bench(specs)
        rows = {k: {**motion(res[k]), "time_s": times[k], "speedup": times["teacher"] / times[k]} for k in specs}
        joint = "joint 4 steps, 30% pruned"
        if "joint" in only:
            keys = ("teacher", joint, "step-only 4 steps, unpruned", "step-only 3 steps, unpruned")
            found["joint"] = {"rows": {k: rows[k] for k in keys}, **verdict(
                [beats(res[joint], res["step-only 3 steps, unpruned"], label="joint - step-only 3 steps")])}
        if "stage3" in only:
            found["stage3"] = {"rows": {k: rows[k] for k in (joint, k28)},
                               **verdict([beats(res[joint], res[k28], label="Stage III - Stage II 28 steps")])}

    if "ratio" in only:
        from fastlight.analyze.plans import make_plan

        full = {"0.3": st.shapesbench("beta2=0.25_run", student)}
        res = {"0.3": {**motion(full["0.3"]), "removed": plan.get("achieved_ratio")}}
        for ratio in (0.5, 0.7):
            pdir = st.root / f"ratio{ratio:g}"
            ppath = pdir / "plan.json"
            if not ppath.exists():
                make_plan(str(run_dir / "1_analyze" / "importance.json"), st.c.teacher, ratio, str(ppath), "depth")
            p = json.loads(ppath.read_text())
            s2 = st.stage2(f"ratio{ratio:g}/stage2", plan=str(ppath))
            s3 = st.stage3(f"ratio{ratio:g}/stage3", teacher=str(s2))
            full[f"{ratio:g}"] = st.shapesbench(f"ratio{ratio:g}", s3)
            res[f"{ratio:g}"] = {**motion(full[f"{ratio:g}"]), "removed": p.get("achieved_ratio")}
        found["ratio"] = {"rows": res, **verdict([beats(full["0.3"], full["0.5"], SHARP_DROP, "30% plan - 50% plan")])}

    found["wall_s"] = round(time.time() - t0, 1)
    st.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(st.root / "ablations.json", found)
    md = table(found)
    atomic_write_text(st.root / "ablations.md", md)
    print(md)
    print(f"written to {st.root / 'ablations.json'} and ablations.md ({found['wall_s']:.0f} s)")
    return found


def _f(x, fmt=".3f"):
    return "-" if x is None else format(x, fmt)


def _sc(row: dict) -> str:
    """'0.908 [0.897, 0.919]': a score with its 95% interval over cases."""
    iv = row.get("interval")
    return _f(row["score"]) + (f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else "")


def _verdict_cell(f: dict) -> str:
    """'yes: 0.25 - 0 = +0.012 [+0.004, +0.020]; ...' (paired 95% intervals; margin when not 0)."""
    word = "yes" if f["reproduces"] else "no"
    if "tests" not in f:
        return f"{word} ({f['rule']})" if "rule" in f else word
    parts = []
    for t in f["tests"]:
        d = Interval.from_json(t["difference"])
        sp = "+.4f" if abs(d.estimate) < 0.01 else "+.3f"
        margin = f" > {t['margin']:g}" if t["margin"] else " > 0"
        parts.append(f"{t['test']} = {d.estimate:{sp}} [{d.low:{sp}}, {d.high:{sp}}]{margin}: "
                     f"{'holds' if t['holds'] else 'fails'}")
    return f"{word}: " + "; ".join(parts)


def table(found: dict) -> str:
    lines = ["| finding | paper | ours (Shapes world; ShapesBench with 95% intervals over cases) "
             "| reproduces? (paired 95% intervals of the differences) |", "|---|---|---|---|"]
    for key, claim in PAPER.items():
        if key not in found:
            continue
        f = found[key]
        if key == "importance":
            ours = (f"first {_f(f['first'])}, last {_f(f['last'])}, middle mean {_f(f['middle_mean'])}; "
                    f"least important {f['least']}")
        elif key == "alpha":
            e = f["error_at_plan"]
            ours = "Tweedie error at the plan (validation stream): " + ", ".join(
                f"alpha {k}: {_f(v['mean'], '.4f')} [{v['interval']['low']:.4f}, {v['interval']['high']:.4f}]"
                for k, v in e.items() if k != "untrained") + f" (untrained {_f(e['untrained']['mean'], '.4f')})"
        elif key == "beta2":
            ours = "; ".join(f"{k}: score {_sc(v)}, direction {_f(v['direction'], '.2f')}, speed ratio "
                             f"{_f(v['speed_ratio'], '.2f')}, dynamic {_f(v['dynamic_degree'], '.2f')}" for k, v in f["rows"].items())
        elif key == "teacher":
            ours = f"pruned {_sc(f['pruned'])} vs unpruned {_sc(f['unpruned'])} (ShapesBench)"
        elif key in ("joint", "stage3"):
            ours = "; ".join(f"{k}: {_sc(v)} (direction {_f(v['direction'], '.2f')}) at {v['speedup']:.1f}x"
                             for k, v in f["rows"].items())
        else:
            ours = "; ".join(f"{float(k):.0%} plan ({_f(v['removed'], '.0%')} removed): {_sc(v)}"
                             for k, v in f["rows"].items())
        lines.append(f"| {key} | {claim} | {ours} | {_verdict_cell(f)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
