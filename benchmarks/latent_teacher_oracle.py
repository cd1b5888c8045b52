"""Does a latent Shapes teacher pass issue 17's oracle bar? Its videos through the pipeline's own VAE, judged.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latent_teacher_oracle.py --transformer runs/x/pretrain/model \
        --pipeline runs/x/pipe --split validation --cases 64 --guidance 3,4,5 --out runs/x/oracle_val.json

The teacher samples ShapesBench cases of the pipeline folder's world (v2: `pipeline_bench.ShapesPipelineOracle`)
on the real-model evaluation path (`fastlight.evaluate.real.evaluate_oracle_cases`: the folder's text encoder,
the case's first frame encoded by the folder's VAE as the TI2V condition, Euler with the folder's flow shift,
CFG `--guidance`, decoded by the folder's VAE), one row per guidance on the same cases and noise (one
scale is judged beside guidance 1, no CFG: the evaluation pairs every row with the first). `--split
validation` is where a guidance (or a checkpoint) is chosen; `--split test` is where the chosen one is
reported. Per row: the v2 oracle's parts with 95% bootstrap intervals over cases (direction, speed within
10%, colour, ghost-free, count, smooth, static: `benchmarks/vae_oracle.py`'s `_oracle`), the ghost clips,
and `bar_ok` (direction, colour and speed within 10% >= 0.95, no ghost clip). The same oracle on the VAE's
round trip of the TRUE clips of those cases (`vae_oracle.score_set`: the ceiling this VAE sets) and on the
true clips themselves (`ideal`) are printed beside them. `--transformer` swaps the folder's transformer (a
`fastlight pretrain` model folder); the folder itself is not changed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastlight.data.synthesize import pipeline_shift  # noqa: E402
from fastlight.decoder.prune import load_vae  # noqa: E402
from fastlight.diffusion.spec import SamplerSpec  # noqa: E402
from fastlight.evaluate.real import evaluate_oracle_cases  # noqa: E402
from fastlight.fileio import atomic_write_json  # noqa: E402
from fastlight.models.load import resolve_model_path  # noqa: E402
from fastlight.shapes.pipeline_bench import pipeline_oracle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vae_oracle  # noqa: E402  (benchmarks/vae_oracle.py: the parts and the bar)

FRAMES, SIZE = 9, 64


def _row_figures(oracle_row: dict) -> dict:
    figs = vae_oracle._oracle(oracle_row)
    return {**figs, "bar_ok": vae_oracle.bar_ok(figs)}


def _line(name: str, f: dict) -> str:
    def iv(k):
        v = f[k]["value"]
        i = f[k]["interval"] or {}
        lo, hi = i.get("low"), i.get("high")
        return f"{k} {v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")
    return (f"{name:>16}: " + ", ".join(iv(k) for k in ("direction", "speed_within_10pct", "colour", "ghost"))
            + f", ghost clips {f['num_ghost_clips']}, speed ratio median {f['speed_ratio_median']}, "
              f"score {f['score']['value']:.3f}, bar {'MET' if f['bar_ok'] else 'not met'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default="shapes-pipeline", help="a Shapes pipeline folder or preset")
    ap.add_argument("--transformer", default=None, help="a transformer folder to judge instead of the folder's own")
    ap.add_argument("--split", choices=("validation", "test"), default="validation")
    ap.add_argument("--cases", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="Euler steps")
    ap.add_argument("--guidance", default="4", help="CFG scales, comma-separated (one row each)")
    ap.add_argument("--seed", type=int, default=0, help="the evaluation noise (fastlight run's seed)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON of every figure (written atomically)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    pipe = resolve_model_path(args.pipeline)
    transformer = Path(args.transformer) if args.transformer else pipe / "transformer"
    shift = pipeline_shift(pipe)
    oracle = pipeline_oracle(pipe, num_frames=FRAMES, height=SIZE, width=SIZE, seed=args.seed, split=args.split)
    if oracle is None:
        ap.error(f"{pipe} is not a Shapes pipeline folder (its model_index.json names no Shapes text encoder)")
    scales = [float(g) for g in args.guidance.split(",")]
    if len(scales) == 1:  # the evaluation pairs rows against the first: one scale is judged beside no CFG
        scales = [1.0] + scales if scales[0] != 1.0 else scales + [4.0]
    models = {f"cfg{g:g}": (transformer, SamplerSpec.euler(args.steps, g, shift)) for g in scales}
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="latent_teacher_oracle_"))
    try:
        res = evaluate_oracle_cases(pipe, models, oracle, args.cases, work / "eval", num_frames=FRAMES, height=SIZE,
                                    width=SIZE, seed=args.seed, videos=False, progress=True,
                                    batch_size=args.batch_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sample_s = time.time() - t0
    vae = load_vae(str(pipe / "vae"))
    ceiling = vae_oracle.score_set(vae, FRAMES, 0, args.cases, args.split)
    rows = {name: _row_figures(m) for name, m in res["oracle"]["models"].items()}
    doc = {"transformer": str(transformer), "pipeline": str(pipe), "split": args.split, "cases": args.cases,
           "num_steps": args.steps, "shift": shift, "seed": args.seed, "sample_and_score_s": round(sample_s, 1),
           "threads": args.threads, "rows": rows,
           "command": "benchmarks/latent_teacher_oracle.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "pairs": {n: p["score"] for n, p in res["oracle"]["pairs"].items()},
           "vae_round_trip": {**ceiling["oracle"], "bar_ok": ceiling["bar_ok"]}, "ideal": ceiling["ideal"]}
    for name, f in rows.items():
        print(_line(name, f))
    print(_line("VAE round trip", doc["vae_round_trip"]))
    print(_line("true clips", {**ceiling["ideal"], "bar_ok": vae_oracle.bar_ok(ceiling["ideal"])}))
    if args.out:
        atomic_write_json(args.out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
