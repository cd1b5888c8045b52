"""Which light decoder reaches 1/15 of the full decoder's time: stock AutoencoderKLWan configs and the one-pass
FastWanDecoder, side by side with the full decoder in one run.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/decoder_configs.py --threads 1 2 --repeats 9 \
        --out runs/decoder/configs.json
    # the fast decoder against the full one and the fastest stock layout only
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/decoder_configs.py --only fast --threads 1 \
        --repeats 15 --out runs/decoder/fast.json

Every light config is the teacher VAE's config changed by `fastlight.decoder.prune.light_config` (stock
AutoencoderKLWan, loadable from config.json; random weights: the time does not depend on them):
`decoder_base_dim` (the width), `res_blocks` (num_res_blocks: resnets per up block) and `head=patch2` (the
last, full-resolution up stage replaced by the stock 2x2 depth-to-space, patch_size=2). The `fast w=W` rows are
`FastWanDecoder.from_teacher(teacher.config, width=W)` (fastlight/decoder/fast.py, `--fast-widths`; random
weights too). `--only fast`: the full decoder, the fastest stock layout and the fast rows. One video per call
(the same latents for all: the teacher's encoder on one Shapes clip, 16x3x8x8 for the shipped VAE), `decode`
as the stock pipelines call it. Timing: `fastlight.evaluate.bench.bench_callables` (every config once per
round, interleaved, `--warmup` untimed rounds, median of `--repeats`), at each `--threads` count in turn.
Ratio = config median / full decoder median at the same thread count.

Profile (`--profile`, one thread): torch.profiler self CPU time per op class (3-D/2-D convolutions, the RMS
norms' vector norms, the rest: copies, cat, pads, elementwise, Python) for the full decoder and the light
configs, and the time per latent frame (the decoder runs frame by frame with a feature cache: frame 0 makes
1 video frame, each later one 4) from timers around `decoder.forward`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (name, decoder_base_dim or None for the teacher's, res_blocks, head); head "fast": a FastWanDecoder of width d
BEST_STOCK = ("d=4, patch2, res_blocks=0", 4, 0, "patch2")
CONFIGS = [("full decoder", None, None, "full")] + \
    [(f"d={d}", d, None, "full") for d in (12, 8, 6, 4)] + \
    [(f"d={d}, res_blocks=0", d, 0, "full") for d in (8, 4)] + \
    [(f"d={d}, patch2", d, None, "patch2") for d in (8, 4)] + \
    [(f"d={d}, patch2, res_blocks=0", d, 0, "patch2") for d in (8, 6, 4, 3, 2)]


def configs(only: str, fast_widths) -> list[tuple]:
    """The rows of this run: every stock config (or, with only="fast", the full decoder and BEST_STOCK), then one
    FastWanDecoder row per width."""
    base = CONFIGS if only == "all" else [CONFIGS[0], BEST_STOCK]
    return base + [(f"fast w={w}", w, None, "fast") for w in fast_widths]


def build(teacher, d, res_blocks, head):
    from diffusers import AutoencoderKLWan

    from fastlight.decoder.fast import FastWanDecoder
    from fastlight.decoder.prune import light_config

    if d is None:
        return teacher
    torch.manual_seed(0)
    if head == "fast":
        return FastWanDecoder.from_teacher(teacher.config, width=d).eval()
    return AutoencoderKLWan(**light_config(teacher.config, d, res_blocks, head)).eval()


def profile_ops(vae, z, runs: int = 5) -> dict:
    """Self CPU ms per decode by op class, and ms per latent frame (frame 0, later frames)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        vae.decode(z)
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(runs):
                vae.decode(z)
    cls = {"conv": 0.0, "norm": 0.0, "other": 0.0}
    for e in p.key_averages():
        key = "conv" if "conv" in e.key else "norm" if "norm" in e.key else "other"
        cls[key] += e.self_cpu_time_total / 1000 / runs
    total = sum(cls.values())
    out = {"self_cpu_ms": {k: round(v, 1) for k, v in cls.items()},
           "share": {k: round(v / total, 3) for k, v in cls.items()}, "ms_per_latent_frame": []}
    if not hasattr(vae, "decoder"):  # a FastWanDecoder: one pass over the clip, no per-latent-frame calls
        return out
    frames: list[list[float]] = [[] for _ in range(z.shape[2])]
    inner = vae.decoder.forward
    calls = []

    def timed(*a, **k):
        t = time.perf_counter()
        out = inner(*a, **k)
        calls.append(time.perf_counter() - t)
        return out

    vae.decoder.forward = timed
    try:
        with torch.no_grad():
            for _ in range(runs):
                calls.clear()
                vae.decode(z)
                for i, t in enumerate(calls):
                    frames[i].append(t)
    finally:
        del vae.decoder.forward
    out["ms_per_latent_frame"] = [round(1000 * statistics.median(f), 1) for f in frames]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="shapes-vae")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="also the op-class / per-frame profile (one thread)")
    ap.add_argument("--fast-widths", type=int, nargs="*", default=[8, 16], help="FastWanDecoder widths (rows)")
    ap.add_argument("--only", choices=("all", "fast"), default="all",
                    help="fast: only the full decoder, the fastest stock layout and the FastWanDecoder rows")
    ap.add_argument("--out", default="runs/decoder/configs.json")
    args = ap.parse_args(argv)

    from fastlight.decoder.distill import clip_source, resolve_vae_path, shapes_latents
    from fastlight.decoder.prune import count, load_vae
    from fastlight.evaluate.bench import bench_callables

    tdir = resolve_vae_path(args.teacher)
    teacher = load_vae(tdir)
    with torch.no_grad():
        z = shapes_latents(teacher, clip_source(tdir), 3_000_017, 1)[1]
    rows_spec = configs(args.only, args.fast_widths)
    models = {name: build(teacher, d, rb, head) for name, d, rb, head in rows_spec}
    with torch.no_grad():
        shape = teacher.decode(z).sample.shape
        for name, m in models.items():
            assert m.decode(z).sample.shape == shape, (name, m.decode(z).sample.shape, shape)

    def fn(m):
        def run():
            with torch.no_grad():
                m.decode(z)
        return run

    times = {}
    for th in args.threads:
        torch.set_num_threads(th)
        res = bench_callables({n: fn(m) for n, m in models.items()}, repeats=args.repeats, warmup=args.warmup,
                              progress=False)
        times[th] = {n: r["time_s"] for n, r in res.items()}
    torch.set_num_threads(1)
    prof = {n: profile_ops(m, z) for n, m in models.items()} if args.profile else {}

    rows = []
    for name, d, rb, head in rows_spec:
        m = models[name]
        if head == "fast":
            row = {"config": name, "class": "FastWanDecoder", "width": d, "head": "pixel shuffle",
                   "decoder_params": count(m)}
        else:
            row = {"config": name, "class": "AutoencoderKLWan", "decoder_base_dim": m.config.decoder_base_dim or
                   m.config.base_dim, "num_res_blocks": m.config.num_res_blocks, "head": head,
                   "decoder_params": count(m.decoder)}
        for th in args.threads:
            t, t0 = times[th][name], times[th]["full decoder"]
            row[f"ms_{th}t"] = round(1000 * t["median"], 1)
            row[f"ms_{th}t_min_max"] = [round(1000 * t["min"], 1), round(1000 * t["max"], 1)]
            row[f"ratio_{th}t"] = round(t["median"] / t0["median"], 3)
        if name in prof:
            row["profile_1t"] = prof[name]
        rows.append(row)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "teacher": str(tdir),
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "latent_shape": list(z.shape[1:]), "video_shape": list(shape[1:]), "threads": args.threads,
              "repeats": args.repeats, "warmup": args.warmup, "rows": rows,
              "note": "CPU times on a shared machine: compare ratios (interleaved), not absolute times"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    head_cells = " | ".join(f"{th} thread{'s' if th > 1 else ''}: ms (min-max) | / full" for th in args.threads)
    print(f"| config | decoder params | {head_cells} |" + (" conv / norm / other (1t) | ms per latent frame |"
                                                           if prof else ""))
    print("|---|---|" + "---|---|" * len(args.threads) + ("---|---|" if prof else ""))
    for r in rows:
        cells = " | ".join(f"{r[f'ms_{th}t']:.1f} ({r[f'ms_{th}t_min_max'][0]:.0f}-{r[f'ms_{th}t_min_max'][1]:.0f}) | "
                           f"{r[f'ratio_{th}t']:.3f} (1/{1 / r[f'ratio_{th}t']:.1f})" for th in args.threads)
        extra = ""
        if "profile_1t" in r:
            s = r["profile_1t"]["share"]
            extra = (f" {s['conv']:.0%} / {s['norm']:.0%} / {s['other']:.0%} | "
                     f"{', '.join(str(x) for x in r['profile_1t']['ms_per_latent_frame'])} |")
        print(f"| {r['config']} | {r['decoder_params']:,} | {cells} |{extra}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
