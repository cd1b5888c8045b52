"""Stage III check: the well-guided teacher's intra-CFG weight beta2 (`guide_beta2`), chosen on VALIDATION cases.

    python benchmarks/beta2_validation.py --out runs/beta2_validation \
        [--stage2 runs/fastlightgen/3_stage2/model] [--beta2 0 --beta2 0.25 --beta2 1] [--cases 320]

From one Stage II model (copied into OUT/stage2_model first, so the source run is never touched),
one Stage III run (`fastlightgen` recipe) per beta2 with otherwise the settings of the demo recipe
(`--config`, default configs/shapes/fastlightgen.yaml: its `stage3:` mapping with `--preset`'s
overrides, 200 steps; seed `--seed`); each student is scored by ShapesBench on the same
`--cases` VALIDATION cases and noise (`evaluate_model(split="validation")`: disjoint from the test
cases the README reports on, and from the training and calibration streams). The table gives every
score with its 95% bootstrap interval over cases and the paired 95% interval of each beta2's score
minus the reference's (`--reference`, default 0.25: the paper's value the recipes ship with), the
test for "beta2 = X beats the reference". Re-running continues: a finished run or evaluation is
reused. `--reuse BETA2=MODEL` copies an existing Stage III model folder in place of that run (e.g.
the `make demo` run's runs/fastlightgen/4_stage3/model, which IS the beta2 = 0.25 run of these
settings). Writes OUT/beta2_validation.json.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fastlight.config import from_dict, load_config
from fastlight.distill.dmd import DmdConfig
from fastlight.fileio import atomic_dir, atomic_write_json, read_json_object
from fastlight.models.load import resolve_model_path
from fastlight.run.pipeline import RunConfig, resolve
from fastlight.shapes.bench import WEIGHTS, evaluate_model, paired_intervals
from fastlight.train.entry import run_recipe

PARTS = tuple(WEIGHTS)


def stage3_settings(config: str, preset: str) -> dict:
    """The run config's `stage3:` mapping with the preset's overrides (what `fastlight run` trains with)."""
    cfg = load_config(RunConfig, config)
    cfg.preset = preset
    return dict(resolve(cfg).stage3)


def copy_model(src: str, dst: Path) -> Path:
    """A private copy of the Stage II model folder (made once, atomically)."""
    if not dst.exists():
        with atomic_dir(dst) as tmp:
            shutil.copytree(resolve_model_path(src), tmp, dirs_exist_ok=True)
    return dst


def train_student(teacher: Path, out: Path, settings: dict, beta2: float, seed: int, threads: int,
                  reuse: str | None = None) -> Path:
    """One Stage III run at guide_beta2 = beta2 (reused when its model folder exists; `reuse`: a
    finished model folder of that run, copied instead of training)."""
    model = out / "model"
    if not model.exists() and reuse:
        copy_model(reuse, model)
    if not model.exists():
        cfg = from_dict(DmdConfig, {**settings, "out": str(out), "teacher": str(teacher), "seed": seed,
                                    "threads": threads, "guide_beta2": beta2}, "beta2 run")
        run_recipe("fastlightgen", cfg, progress=False)
    return model


def evaluate(model: Path, out: Path, cases: int, seed: int) -> dict:
    """ShapesBench on the validation cases (reused when out/shapesbench.json exists)."""
    done = out / "shapesbench.json"
    if done.exists():
        return read_json_object(done)
    return evaluate_model(str(model), str(out), num_cases=cases, seed=seed, save_videos=False, vbench=False,
                          split="validation", progress=False)


def fmt(iv) -> str:
    return f"{iv['estimate']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]"


def fmt_diff(iv) -> str:
    return f"{iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]"


def table(results: dict[str, dict], paired: dict[str, dict], reference: str) -> list[str]:
    """Markdown rows: beta2, score [95%], paired difference against the reference, parts."""
    lines = ["| beta2 | score [95%] | score - beta2 " + reference + " (paired 95%) | " + " | ".join(PARTS) + " |",
             "|---|---|---|" + "---|" * len(PARTS)]
    for name, res in results.items():
        d = paired.get(name)
        parts = " | ".join("n/a" if res["parts"][p] is None else f"{res['parts'][p]:.3f}" for p in PARTS)
        lines.append(f"| {name} | {fmt(res['intervals']['score'])} | {fmt_diff(d['score']) if d else '(reference)'} "
                     f"| {parts} |")
    return lines


def verdict(paired: dict[str, dict], reference: str) -> str:
    """Which beta2 beats the reference by a paired interval excluding 0 (none: keep the reference)."""
    better = [n for n, d in paired.items() if d["score"]["low"] > 0]
    worse = [n for n, d in paired.items() if d["score"]["high"] < 0]
    if better:
        return (f"beta2 {', '.join(better)} beat{'s' if len(better) == 1 else ''} {reference} "
                "(paired 95% interval above 0)")
    tail = f"; {', '.join(worse)} worse (paired 95% interval below 0)" if worse else ""
    return f"keep beta2 = {reference}: no value beats it by a paired 95% interval excluding 0{tail}"


def parse_reuse(items: list[str]) -> dict[str, str]:
    """["0.25=PATH", ...] -> {"0.25": PATH} (keys as the table names the runs)."""
    out = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not path:
            raise SystemExit(f"--reuse {item!r}: expected BETA2=MODEL_FOLDER")
        out[f"{float(key):g}"] = path
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="output folder (runs, evaluations, beta2_validation.json)")
    ap.add_argument("--stage2", default="runs/fastlightgen/3_stage2/model", help="the Stage II model (copied)")
    ap.add_argument("--config", default="configs/shapes/fastlightgen.yaml")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--beta2", type=float, action="append", default=None, help="repeatable; default 0, 0.25, 1")
    ap.add_argument("--reference", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=None, help="Stage III steps (default: the preset's)")
    ap.add_argument("--cases", type=int, default=320, help="ShapesBench validation cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="append", default=[], help="BETA2=MODEL: a finished Stage III model of that run")
    a = ap.parse_args(argv)
    reuse = parse_reuse(a.reuse)
    values = sorted(set(a.beta2 or [0.0, 0.25, 1.0]) | {a.reference})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = stage3_settings(a.config, a.preset)
    if a.steps is not None:
        settings["steps"] = a.steps
    teacher = copy_model(a.stage2, out / "stage2_model")
    results = {}
    for b in values:
        name = f"{b:g}"
        model = train_student(teacher, out / f"beta2_{name}", settings, b, a.seed, a.threads, reuse.get(name))
        results[name] = evaluate(model, out / f"beta2_{name}" / "validation", a.cases, a.seed)
        print(f"beta2 {name}: score {fmt(results[name]['intervals']['score'])}", flush=True)
    ref = f"{a.reference:g}"
    paired = {}
    for name, res in results.items():
        if name != ref:
            d = paired_intervals(res, results[ref])
            paired[name] = {"score": d["score"].to_json(),
                            "parts": {k: (v.to_json() if v is not None else None) for k, v in d["parts"].items()}}
    lines = table(results, paired, ref)
    line = verdict(paired, ref)
    print("\n".join(lines))
    print(line)
    doc = {"stream": "validation", "num_cases": a.cases, "seed": a.seed, "stage2": str(a.stage2),
           "stage3": settings, "reference": a.reference, "reused": reuse, "verdict": line, "table": lines,
           "results": {n: {"score": r["score"], "parts": r["parts"], "intervals": r["intervals"],
                           "metrics": r["metrics"]} for n, r in results.items()},
           "paired": paired}
    atomic_write_json(out / "beta2_validation.json", doc)
    return doc


if __name__ == "__main__":
    main()
