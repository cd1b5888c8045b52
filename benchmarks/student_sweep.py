"""Which Stage I-III settings recover the pruned student? Variants of a run recipe, judged on VALIDATION cases.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/student_sweep.py configs/shapes/pipeline.yaml \
        --variant base --variant lr3:stage2.lr=1e-3 --variant r29:prune_ratio=0.29,stage2.lr=1e-3 \
        --cases 64 --out runs/sweep

Each `--variant NAME[:KEY=VALUE,...]` (after the `--set KEY=VALUE` overrides every variant shares) is
`fastlight run RECIPE out=OUT/NAME KEY=VALUE ...` through stage 4_stage3 (Stage I, the plan, Stage II,
Stage III; a finished variant is reused), then its student (its own few-step sampler) is sampled beside the
teacher at 4 Euler steps (the run's CFG and flow shift) on the first `--cases` ShapesBench VALIDATION cases of
the teacher's world, the same cases and noise for every variant, decoded by the pipeline's own VAE and judged
by its oracle (`fastlight.evaluate.real.evaluate_oracle_cases`).
One row per variant: the student's score with its 95% interval and the paired student - teacher difference.
This is where a recipe's settings are CHOSEN; the chosen recipe's run reports its TEST cases (`fastlight run`'s
evaluate stage, `benchmarks/paper_table.py`). Results go to OUT/sweep.json (rewritten after each variant).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastlight.diffusion.spec import SamplerSpec  # noqa: E402
from fastlight.errors import ConfigError, MissingFileError  # noqa: E402
from fastlight.evaluate.real import evaluate_oracle_cases, pipeline_oracle  # noqa: E402
from fastlight.evaluate.stats import Interval  # noqa: E402
from fastlight.fileio import atomic_write_json  # noqa: E402
from fastlight.run.pipeline import (VIDEO_KEYS, Run, RunConfig, eval_options, sampling_of, teacher_folder,  # noqa: E402
                                    teacher_shift, teacher_transformer)

STAGES = "1_analyze,2_plan,3_stage2,4_stage3"
FEW_STEPS = 4
REFERENCE = f"teacher_{FEW_STEPS}steps"


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'NAME' or 'NAME:k=v,k=v' -> (NAME, ['k=v', ...])."""
    name, _, rest = text.partition(":")
    overrides = [o for o in rest.split(",") if o]
    if not name or "/" in name or any("=" not in o for o in overrides):
        raise ConfigError(f"--variant {text!r}: expected NAME or NAME:KEY=VALUE,KEY=VALUE (e.g. lr3:stage2.lr=1e-3)")
    return name, overrides


def train_variant(recipe: Path, out: Path, overrides: list[str], threads: int) -> Run:
    """`fastlight run` through Stage III into `out` (resumes / reuses what is finished)."""
    cmd = [sys.executable, "-m", "fastlight", "run", str(recipe), f"out={out}", f"threads={threads}", *overrides]
    subprocess.run([*cmd, "--only", STAGES], check=True, stdout=subprocess.DEVNULL)
    run = Run(RunConfig(**yaml.safe_load((out / "config.yaml").read_text())))
    if not run.stage3_model.is_dir():
        raise MissingFileError(f"{out}: no Stage III model after `fastlight run` (see its log)")
    return run


def score_variant(run: Run, cases: int, out: Path) -> dict:
    """The student beside the 4-step teacher on the first `cases` validation cases."""
    c = run.cfg
    pipeline = teacher_folder(c)
    size = {k: eval_options(c)[k] for k in VIDEO_KEYS}
    oracle = pipeline_oracle(pipeline, **size, seed=c.seed, split="validation")
    if oracle is None:
        raise ConfigError(f"teacher {c.teacher} has no world oracle: the sweep judges students with one")
    rows = {REFERENCE: (teacher_transformer(c), SamplerSpec.euler(FEW_STEPS, c.cfg_scale, teacher_shift(c))),
            "student": (run.stage3_model, sampling_of(run.stage3_model, c))}
    res = evaluate_oracle_cases(pipeline, rows, oracle, cases, out, **size, seed=c.seed, videos=False,
                                progress=False)
    orc = res["oracle"]
    brief = lambda m: {k: m[k] for k in ("score", "interval", "parts", "split", "num_cases")}  # noqa: E731
    return {"student": brief(orc["models"]["student"]), "teacher": brief(orc["models"][REFERENCE]),
            "student_minus_teacher": orc["pairs"]["student"]["score"],
            "removed_fraction": json.loads(run.plan.read_text())["achieved_ratio"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--variant", action="append", required=True, help="NAME or NAME:KEY=VALUE,KEY=VALUE")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every variant")
    ap.add_argument("--cases", type=int, default=64, help="validation cases (the same for every variant)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"))
    a = ap.parse_args(argv)
    variants = [parse_variant(v) for v in a.variant]
    result = {"recipe": str(a.recipe), "split": "validation", "cases": a.cases, "variants": {}}
    for name, overrides in variants:
        t0 = time.time()
        run = train_variant(a.recipe, a.out / name, [*a.set, *overrides], a.threads)
        t1 = time.time()
        row = score_variant(run, a.cases, a.out / name / "validation_eval")
        result["variants"][name] = {"overrides": overrides, **row, "train_s": round(t1 - t0),
                                    "score_s": round(time.time() - t1)}
        atomic_write_json(a.out / "sweep.json", result)
        s, d = row["student"], row["student_minus_teacher"]
        print(f"{name:24s} {' '.join(overrides) or '(the recipe)':60s} removed {row['removed_fraction']:.1%}  "
              f"student {Interval.from_json(s['interval']).fmt()}  "
              f"- teacher {Interval.from_json(d).fmt('+.3f')}", flush=True)
    print(f"wrote {a.out / 'sweep.json'}")


if __name__ == "__main__":
    main()
