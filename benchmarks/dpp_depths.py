"""Stage II check: Tweedie denoising error of the teacher vs dpp-trained elastic models at several depths.

    python benchmarks/dpp_depths.py --importance runs/study/analyze/importance.json \
        --model teacher=shapes-teacher --model dpp_a1=runs/dpp_alpha1.0/model ... --out runs/dpp_depths.json

For each prune ratio (0, 0.2, 0.3, 0.5) the blocks come from the teacher's Stage I importance
(`depth_plan`, ends kept); every model is scored on the same held-out set drawn from the
VALIDATION stream (`shapes.bench.heldout_calibration`: disjoint from the training and
calibration streams and from the shipped teacher's training batches, tests/shapes/test_streams.py):
mean ||x0_hat - x0||^2 over frames 1.., with its standard error; `--paired A,B` adds the paired 95%
bootstrap interval of mean error(A) - mean error(B) at each ratio (same samples, same noise), the
test for "A beats B" (e.g. `--paired dpp_a0.5,dpp_a0`: the alpha choice).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fastlight.analyze.importance import denoising_error, importance_rows, read_importance, tweedie_x0
from fastlight.analyze.plans import depth_plan
from fastlight.evaluate.stats import mean_of, paired_difference
from fastlight.fileio import atomic_write_json
from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path
from fastlight.shapes.bench import heldout_calibration

RATIOS = (0.0, 0.2, 0.3, 0.5)


@torch.inference_mode()
def sample_errors(model, calib, skip) -> torch.Tensor:
    """(N,) Tweedie denoising error of every held-out sample."""
    return torch.cat([denoising_error(tweedie_x0(model, b, skip), b.x0, b.cond.image is not None) for b in calib])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--importance", required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (the first is the reference)")
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--out", default=None)
    ap.add_argument("--paired", action="append", default=[], help="A,B: paired interval of error(A) - error(B)")
    a = ap.parse_args()
    named = [m.split("=", 1) for m in a.model]
    models = {name: load_denoiser(resolve_model_path(path)).eval() for name, path in named}
    teacher = next(iter(models.values()))
    rows = importance_rows(read_importance(a.importance, teacher), None)
    skips = {0.0: []}
    for r in RATIOS[1:]:
        skips[r] = depth_plan(rows, teacher, r, verbose=False)["drop_blocks"]
    calib = heldout_calibration(teacher, a.calib, seed=0, split="validation")
    errors = {name: {str(r): sample_errors(m, calib, skips[r]).numpy() for r in RATIOS} for name, m in models.items()}
    table = {name: {r: (float(e.mean()), float(e.std(ddof=1) / len(e) ** 0.5)) for r, e in errs.items()}
             for name, errs in errors.items()}
    print("| model | " + " | ".join(f"{int(r * 100)}% ({len(skips[r])} dropped)" for r in RATIOS) + " |")
    print("|---|" + "---|" * len(RATIOS))
    for name, errs in table.items():
        print(f"| {name} | " + " | ".join(f"{e:.4f} +- {se:.4f}" for e, se in errs.values()) + " |")
    paired = {}
    for pair in a.paired:
        name_a, name_b = pair.split(",")
        paired[pair] = {r: paired_difference(mean_of("e"), {"e": errors[name_a][r]}, {"e": errors[name_b][r]}).to_json()
                        for r in errors[name_a]}
        print(f"{name_a} - {name_b} (paired, 95%): " + "; ".join(
            f"{int(float(r) * 100)}%: {d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" for r, d in paired[pair].items()))
    if a.out:
        p = Path(a.out)
        atomic_write_json(p, {"skips": {str(k): v for k, v in skips.items()}, "errors": table, "paired": paired,
                              "stream": "validation"})


if __name__ == "__main__":
    main()
