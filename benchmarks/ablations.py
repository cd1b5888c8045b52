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

Every student is scored by ShapesBench on the run's held-out cases and timed by `fastlight bench`
side by side with the teacher in one call. Writes RUN/ablations/ablations.json and ablations.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from fastlight.diffusion.spec import SamplerSpec, override
from fastlight.fileio import atomic_write_json, atomic_write_text
from fastlight.models.load import resolve_model_path
from fastlight.run.pipeline import Run, RunConfig, _recipe_config, _train, bench_spec as spec, sampling_of, student_sampling

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
    def stage2(self, name: str, **over) -> Path:
        out = self.root / name
        if (out / "model" / "fastlight.json").exists():
            return out / "model"
        base = {"out": str(out), "teacher": self.c.teacher, "plan": str(self.run.plan), "seed": self.c.seed,
                "threads": self.c.threads, "alpha": 0.5}
        return _train("dpp", _recipe_config("dpp", base, {**self.c.stage2, **over}))

    def stage3(self, name: str, recipe: str = "fastlightgen", teacher: str | None = None, **over) -> Path:
        out = self.root / name
        if (out / "model" / "fastlight.json").exists():
            return out / "model"
        base = {"out": str(out), "teacher": teacher or str(self.run.stage2_model), "seed": self.c.seed,
                "threads": self.c.threads}
        return _train(recipe, _recipe_config(recipe, base, {**self.c.stage3, **over}))

    # ---- measurements ----
    def shapesbench(self, name: str, model: Path | str, sampler: SamplerSpec | None = None, skip=()) -> dict:
        """ShapesBench of `model` with `sampler` (default: how the run samples it, `sampling_of`)."""
        from fastlight.shapes.bench import evaluate_command

        out = self.root / "eval" / name
        if (out / "shapesbench.json").exists():
            return json.loads((out / "shapesbench.json").read_text())
        return evaluate_command(str(model), str(out), sampler or sampling_of(model, self.c), num_cases=self.eval_cases,
                                seed=self.c.seed, skip=skip, save_videos=False)

    def tweedie_error(self, model: Path, skip) -> tuple[float, float]:
        import torch

        from fastlight.shapes.analysis import shapes_calibration
        from fastlight.analyze.importance import denoising_error, tweedie_x0
        from fastlight.models.load import load_denoiser

        m = load_denoiser(model).eval()
        calib = shapes_calibration(m, 64, seed=1)  # held out: the training stream uses seed 0
        with torch.inference_mode():
            errs = torch.cat([denoising_error(tweedie_x0(m, b, skip), b.x0, b.cond.image is not None) for b in calib])
        return errs.mean().item(), (errs.std() / len(errs) ** 0.5).item()

    def bench(self, specs: dict[str, str]) -> dict[str, float]:
        """name -> median seconds per video; all specs timed side by side in one call (teacher first)."""
        from fastlight.evaluate.bench import bench

        rows = bench(list(specs.values()), repeats=self.c.bench_repeats, warmup=1, seed=self.c.seed, progress=False)
        return {n: r["time_s"]["median"] for n, r in zip(specs, rows)}


def motion(res: dict) -> dict:
    vb = res.get("vbench") or {}
    dd = vb.get("dynamic_degree", {}).get("score") if isinstance(vb.get("dynamic_degree"), dict) else None
    return {"score": res["score"], "direction": res["parts"].get("direction"),
            "speed_ratio": res["metrics"].get("speed_ratio_mean"), "dynamic_degree": dd}


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
        score = {r["index"]: r["score"] for r in rows}
        n = len(score)
        middle = [score[i] for i in range(n // 3, n - n // 3)]
        mid = sum(middle) / len(middle)
        found["importance"] = {"first": score[0], "last": score[n - 1], "middle_mean": mid,
                               "least": sorted(score, key=score.get)[:3],
                               "reproduces": score[0] > 2 * mid and score[n - 1] > 2 * mid}

    if "alpha" in only:
        res = {}
        for alpha in (1.0, 0.5, 0.0):
            model = st.run.stage2_model if alpha == 0.5 else st.stage2(f"dpp_alpha{alpha:g}", alpha=alpha)
            res[alpha] = st.tweedie_error(model, drop)
        res["untrained"] = st.tweedie_error(resolve_model_path(st.c.teacher), drop)
        best = min((1.0, 0.5, 0.0), key=lambda k: res[k][0])
        found["alpha"] = {"error_at_plan": {str(k): v for k, v in res.items()}, "best": best, "reproduces": best == 1.0}

    if "beta2" in only or "teacher" in only:
        variants = {"beta2=0.25 (run)": student}
        if "beta2" in only:
            variants["beta2=0"] = st.stage3("dmd_beta2_0", guide_beta2=0.0)
            variants["beta2=1"] = st.stage3("dmd_beta2_1", guide_beta2=1.0)
        if "teacher" in only:
            variants["unpruned scores"] = st.stage3("dmd_unpruned_scores", score_init="unpruned")
        ms = {k: motion(st.shapesbench(k.replace(" ", "_").replace("(", "").replace(")", ""), m)) for k, m in variants.items()}
        if "beta2" in only:
            b = {k: v for k, v in ms.items() if k.startswith("beta2")}
            found["beta2"] = {"rows": b, "reproduces": max(b, key=lambda k: b[k]["score"]) == "beta2=0.25 (run)"
                              and (b["beta2=0"]["speed_ratio"] or 0) < (b["beta2=1"]["speed_ratio"] or 0)}
        if "teacher" in only:
            found["teacher"] = {"pruned": ms["beta2=0.25 (run)"], "unpruned": ms["unpruned scores"],
                                "reproduces": ms["beta2=0.25 (run)"]["score"] > ms["unpruned scores"]["score"]}

    if "joint" in only or "stage3" in only:
        from fastlight.run.pipeline import teacher_eval_dir

        specs = {"teacher": teacher_spec, "joint 4 steps, 30% pruned": spec(student, four)}
        run_teacher = run_dir / teacher_eval_dir(st.c) / "shapesbench.json"
        res = {"joint 4 steps, 30% pruned": st.shapesbench("beta2=0.25_run", student),
               "teacher": json.loads(run_teacher.read_text()) if st.eval_cases == st.c.eval_cases and run_teacher.exists()
               else st.shapesbench("teacher", st.c.teacher, teacher_sampling)}
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
        score = {k: r["score"] for k, r in rows.items()}
        if "joint" in only:
            keys = ("teacher", "joint 4 steps, 30% pruned", "step-only 4 steps, unpruned", "step-only 3 steps, unpruned")
            found["joint"] = {"rows": {k: rows[k] for k in keys},
                              "reproduces": score["joint 4 steps, 30% pruned"] > score["step-only 3 steps, unpruned"]}
        if "stage3" in only:
            found["stage3"] = {"rows": {k: rows[k] for k in ("joint 4 steps, 30% pruned", k28)},
                               "reproduces": score["joint 4 steps, 30% pruned"] > score[k28]}

    if "ratio" in only:
        from fastlight.analyze.plans import plan_command

        res = {"0.3": {"score": st.shapesbench("beta2=0.25_run", student)["score"], "removed": plan.get("achieved_ratio")}}
        for ratio in (0.5, 0.7):
            pdir = st.root / f"ratio{ratio:g}"
            ppath = pdir / "plan.json"
            if not ppath.exists():
                plan_command(str(run_dir / "1_analyze" / "importance.json"), st.c.teacher, ratio, str(ppath), "depth")
            p = json.loads(ppath.read_text())
            s2 = st.stage2(f"ratio{ratio:g}/stage2", plan=str(ppath))
            s3 = st.stage3(f"ratio{ratio:g}/stage3", teacher=str(s2))
            res[f"{ratio:g}"] = {"score": st.shapesbench(f"ratio{ratio:g}", s3)["score"], "removed": p.get("achieved_ratio")}
        sc = [res[k]["score"] for k in ("0.3", "0.5", "0.7")]
        found["ratio"] = {"rows": res, "reproduces": sc[0] - sc[1] < sc[1] - sc[2] or sc[0] - sc[2] > 0.1}

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


def table(found: dict) -> str:
    lines = ["| finding | paper | ours (Shapes world) | reproduces? |", "|---|---|---|---|"]
    for key, claim in PAPER.items():
        if key not in found:
            continue
        f = found[key]
        if key == "importance":
            ours = (f"first {_f(f['first'])}, last {_f(f['last'])}, middle mean {_f(f['middle_mean'])}; "
                    f"least important {f['least']}")
        elif key == "alpha":
            e = f["error_at_plan"]
            ours = "Tweedie error at the plan: " + ", ".join(
                f"alpha {k}: {_f(v[0], '.4f')}" for k, v in e.items() if k != "untrained") + \
                f" (untrained {_f(e['untrained'][0], '.4f')})"
        elif key == "beta2":
            ours = "; ".join(f"{k}: score {_f(v['score'])}, direction {_f(v['direction'], '.2f')}, speed ratio "
                             f"{_f(v['speed_ratio'], '.2f')}, dynamic {_f(v['dynamic_degree'], '.2f')}" for k, v in f["rows"].items())
        elif key == "teacher":
            ours = f"pruned {_f(f['pruned']['score'])} vs unpruned {_f(f['unpruned']['score'])} (ShapesBench)"
        elif key in ("joint", "stage3"):
            ours = "; ".join(f"{k}: {_f(v['score'])} (direction {_f(v['direction'], '.2f')}) at {v['speedup']:.1f}x"
                             for k, v in f["rows"].items())
        else:
            ours = "; ".join(f"{float(k):.0%} plan ({_f(v['removed'], '.0%')} removed): {_f(v['score'])}"
                             for k, v in f["rows"].items())
        lines.append(f"| {key} | {claim} | {ours} | {'yes' if f['reproduces'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
