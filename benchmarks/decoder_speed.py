"""Teacher VAE decoder vs light decoders, side by side in one run: decode time and reconstruction.

    nice -n 5 .venv/bin/python benchmarks/decoder_speed.py --teacher shapes-vae \
        --light "pruned + distilled=runs/decoder/distill/model" --light "pruned, no distillation=runs/decoder/pruned" \
        --clips 16 --repeats 9 --out runs/decoder/speed.json

Held-out latents: the teacher's encoder (posterior mean) on Shapes clips of their own seed stream
(never used by the VAE's training, the pruning calibration or the distillation). Time: `fastlight.
evaluate.bench.bench_callables` (every decoder once per round, interleaved, `--warmup` untimed rounds,
median of `--repeats`), one video (batch 1) per call, marked as the `decode` phase; ratio = light /
teacher median. Quality, on all `--clips` held-out latents: PSNR of each decoder against the teacher
decoder's output (what distillation targets) and against the clips themselves, and the VBench
temporal-flickering formula (`fastlight.evaluate.vbench.temporal_flickering`, static filter off: the
clips move) of every decoder's output next to the clips' own.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELD_OUT_SEED = 3_000_017


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def _frames(video: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()


def _flicker(videos: torch.Tensor) -> float:
    from fastlight.evaluate.vbench import temporal_flickering

    return float(np.mean([temporal_flickering(_frames(v), static_filter=False) for v in videos]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="shapes-vae")
    ap.add_argument("--light", action="append", default=[], help="NAME=FOLDER (repeatable)")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/decoder/speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from fastlight.decoder.distill import clip_source, load_light_decoder, resolve_vae_path, shapes_latents
    from fastlight.decoder.prune import count, load_vae
    from fastlight.evaluate.bench import bench_callables, phase

    tdir = resolve_vae_path(args.teacher)
    teacher = load_vae(tdir)
    models = {"teacher decoder": teacher}
    for spec in args.light:
        name, _, path = spec.rpartition("=")
        models[name or path] = load_light_decoder(path)
    world = clip_source(tdir)
    x, z = shapes_latents(teacher, world, HELD_OUT_SEED, args.clips)

    outs = {}
    with torch.no_grad():
        for name, m in models.items():
            outs[name] = torch.cat([m.decode(z[i:i + 1]).sample for i in range(z.shape[0])])

    def decoder_params(m):
        return count(m.decoder) if hasattr(m, "decoder") else count(m)

    def fn(m):
        def run():
            with torch.no_grad(), phase("decode"):
                m.decode(z[:1])
        return run

    res = bench_callables({n: fn(m) for n, m in models.items()}, repeats=args.repeats, warmup=args.warmup,
                          progress=False)
    t_teacher = res["teacher decoder"]["time_s"]["median"]
    rows = []
    for name, m in models.items():
        t = res[name]["time_s"]
        rows.append({"decoder": name, "decoder_params": decoder_params(m),
                     "time_ms_median": round(1000 * t["median"], 2), "time_ms_min": round(1000 * t["min"], 2),
                     "time_ms_max": round(1000 * t["max"], 2), "time_ratio_vs_teacher": round(t["median"] / t_teacher, 3),
                     "psnr_vs_teacher_db": None if name == "teacher decoder" else round(_psnr(outs[name], outs["teacher decoder"]), 2),
                     "psnr_vs_clips_db": round(_psnr(outs[name], x), 2), "flicker": round(_flicker(outs[name]), 5)})
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": "cpu", "threads": args.threads,
              "teacher": str(tdir), "clips": args.clips, "held_out_seed": HELD_OUT_SEED,
              "latent_shape": list(z.shape[1:]), "video_shape": list(x.shape[1:]), "repeats": args.repeats,
              "warmup": args.warmup, "clips_flicker": round(_flicker(x), 5), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"| decoder | decoder params | decode time / video (median, min-max) | time / teacher | PSNR vs teacher "
          f"decode | PSNR vs clips | flicker (clips: {result['clips_flicker']:.4f}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        pv = "-" if r["psnr_vs_teacher_db"] is None else f"{r['psnr_vs_teacher_db']:.2f} dB"
        print(f"| {r['decoder']} | {r['decoder_params']:,} | {r['time_ms_median']:.1f} ms ({r['time_ms_min']:.1f}-"
              f"{r['time_ms_max']:.1f}) | {r['time_ratio_vs_teacher']:.2f} | {pv} | {r['psnr_vs_clips_db']:.2f} dB | "
              f"{r['flicker']:.4f} |")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
