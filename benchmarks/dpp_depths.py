"""Stage II check: Tweedie denoising error of the teacher vs dpp-trained elastic models at several depths.

    python benchmarks/dpp_depths.py --importance runs/study/analyze/importance.json \
        --model teacher=shapes-teacher --model dpp_a1=runs/dpp_alpha1.0/model ... --out runs/dpp_depths.json

For each prune ratio (0, 0.2, 0.3, 0.5) the blocks come from the teacher's Stage I importance
(`depth_plan`, ends kept); every model is scored on the same held-out set drawn from the
VALIDATION stream (`shapes.bench.heldout_calibration`: disjoint from the training and
calibration streams and from the shipped teacher's training batches, tests/shapes/test_streams.py):
mean ||x0_hat - x0||^2 over frames 1.., with its standard error.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fastlight.analyze.importance import denoising_error, importance_rows, read_importance, tweedie_x0
from fastlight.analyze.plans import depth_plan
from fastlight.fileio import atomic_write_json
from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path
from fastlight.shapes.bench import heldout_calibration

RATIOS = (0.0, 0.2, 0.3, 0.5)


@torch.inference_mode()
def mean_error(model, calib, skip) -> tuple[float, float]:
    errs = torch.cat([denoising_error(tweedie_x0(model, b, skip), b.x0, b.cond.image is not None) for b in calib])
    return errs.mean().item(), (errs.std() / len(errs) ** 0.5).item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--importance", required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH (the first is the reference)")
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    named = [m.split("=", 1) for m in a.model]
    models = {name: load_denoiser(resolve_model_path(path)).eval() for name, path in named}
    teacher = next(iter(models.values()))
    rows = importance_rows(read_importance(a.importance, teacher), None)
    skips = {0.0: []}
    for r in RATIOS[1:]:
        skips[r] = depth_plan(rows, teacher, r, verbose=False)["drop_blocks"]
    calib = heldout_calibration(teacher, a.calib, seed=0, split="validation")
    table = {name: {str(r): mean_error(m, calib, skips[r]) for r in RATIOS} for name, m in models.items()}
    print("| model | " + " | ".join(f"{int(r * 100)}% ({len(skips[r])} blocks)" for r in RATIOS) + " |")
    print("|---|" + "---|" * len(RATIOS))
    for name, errs in table.items():
        print(f"| {name} | " + " | ".join(f"{e:.4f} +- {se:.4f}" for e, se in errs.values()) + " |")
    if a.out:
        p = Path(a.out)
        atomic_write_json(p, {"skips": {str(k): v for k, v in skips.items()}, "errors": table, "stream": "validation"})


if __name__ == "__main__":
    main()
