"""Can the Shapes oracle read through a Shapes VAE? decode(encode(clip)) of TRUE v2 clips, per frame.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vae_oracle.py --vae shapes-vae --clips 24 --threads 1 \
        --out runs/vae3/oracle_v2.json

Held-out sets: ShapesBench's `validation` cases of the v2 world (`--split test`: its test cases, to report a
VAE chosen on validation) (`fastlight.shapes.bench.case_clips`:
stream `shapes/validation` of seed SHAPESBENCH_SEED, step 0, row i; `fastlight.data.source.stream_seed`
hashes the stream name, so no `shapes/train` clip of any seed is among them, and the reported `test`
cases stay untouched):
  * `v2-9`:  cases 0 .. n-1 at 9 frames;
  * `v2-17`: cases 1000 .. 1000+n-1 at 17 frames (other clips than v2-9's: the VAE is causal, so a
    9-frame clip's round trip is the first 9 frames of its 17-frame one and would repeat v2-9).
Per set, on the round trip of the true clips: PSNR per frame index (the whole set's MSE of that
frame); colour kept per frame index (objects >= 60% visible in that frame whose tracked colour area
is within [0.5, 2] x the ideal's; frame 0 with a 95% bootstrap interval over clips); and ShapesBench's
v2 oracle (`score_videos`, the ideal rendering as ground truth) with its 95% bootstrap intervals over
clips: direction, speed within 10%, colour, ghost-free clips, count, smoothness, static, the score;
the same oracle on the true clips themselves (`ideal`: what the oracle gives a perfect VAE); and
`bar_ok`: issue 17's bar (direction >= 95%, colour >= 95%, speed within 10% >= 95%, no ghost clip).
Also the decode time of one 9- and one 17-frame video (batch 1, `AutoencoderKLWan.decode`, median
of `--repeats`).
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

from fastlight.evaluate.stats import bootstrap_interval, ratio_of_sums  # noqa: E402
from fastlight.shapes import bench  # noqa: E402
from fastlight.shapes.clips import v2_world  # noqa: E402
from fastlight.shapes.world import _full_area_px, colour_alpha, render, render_batch  # noqa: E402

SPLIT = "validation"
HELD_OUT_SPLITS = ("validation", "test")
SETS = {"v2-9": (9, 0), "v2-17": (17, 1000)}  # name: (frames, first case index)
BAR = {"direction": 0.95, "colour": 0.95, "speed_within_10pct": 0.95}  # issue 17, plus no ghost clip
PARTS = ("direction", "speed_within_10pct", "colour", "ghost", "count", "smooth", "static")


def psnr_db(mse: float) -> float:
    return 10 * math.log10(4.0 / max(mse, 1e-12))


@torch.no_grad()
def reconstruct(vae, x: torch.Tensor) -> torch.Tensor:
    """decode(posterior mean of encode(x)), clamped, one clip at a time (the way a pipeline decodes)."""
    out = []
    for i in range(x.shape[0]):
        z = vae.encode(x[i:i + 1]).latent_dist.mean
        out.append(vae.decode(z).sample.clamp(-1, 1))
    return torch.cat(out)


def heldout_cases(frames: int, first: int, n: int, split: str = SPLIT) -> list[bench.BenchCase]:
    """ShapesBench `split` cases (validation: what training and selection look at; test: what a chosen
    VAE is reported on) first .. first+n-1 of the v2 world at `frames` frames."""
    if split not in HELD_OUT_SPLITS:
        raise ValueError(f"split must be one of {HELD_OUT_SPLITS}, got {split!r}")
    world = v2_world(frames)
    clips = bench.case_clips(first + n, world, split=split)[first:]
    return [bench.BenchCase(first + i, c, render(c, world)[:, 0], bench.SHAPESBENCH_SEED, split)
            for i, c in enumerate(clips)]


def frame_colour_kept(video: torch.Tensor, clip, world) -> list[list[bool | None]]:
    """Per object, per frame: colour kept (None where the ideal object is < 60% visible)."""
    ideal = render(clip, world)
    rows = []
    for obj in clip.objects:
        ia = colour_alpha(ideal, obj.colour).sum(dim=(1, 2))
        ga = colour_alpha(video, obj.colour).sum(dim=(1, 2))
        full = _full_area_px(obj, world)
        rows.append([None if ia[f] / full < 0.6 else bool(0.5 * ia[f] <= ga[f] <= 2.0 * ia[f])
                     for f in range(video.shape[1])])
    return rows


def _interval(stat, data: dict) -> dict | None:
    return bootstrap_interval(stat, data).to_json() if len(next(iter(data.values()))) >= 2 else None


def _oracle(res: dict) -> dict:
    """The parts this measurement reports from a ShapesBench result, with their intervals."""
    ivs = res["intervals"]["parts"]
    out = {k: {"value": res["parts"][k], "interval": ivs.get(k)} for k in PARTS}
    out["score"] = {"value": res["score"], "interval": res["intervals"]["score"]}
    m = res["metrics"]
    out |= {"num_objects": m["num_objects"], "num_moving": m["num_moving"], "num_ghost_clips": m["num_ghost_clips"],
            "speed_ratio_median": m["speed_ratio_median"], "psnr_db_mean_of_clips": m["psnr_db"]}
    return out


def bar_ok(oracle: dict) -> bool:
    """Issue 17's bar on one set: every BAR part at or above its value and no ghost clip."""
    return all((oracle[k]["value"] or 0) >= v for k, v in BAR.items()) and oracle["num_ghost_clips"] == 0


def score_set(vae, frames: int, first: int, n: int, split: str = SPLIT) -> dict:
    world = v2_world(frames)
    cases = heldout_cases(frames, first, n, split)
    x = render_batch([c.clip for c in cases], world)
    y = reconstruct(vae, x)
    mse_f = ((y - x) ** 2).mean(dim=(0, 1, 3, 4))
    kept = np.zeros((n, frames))
    judged = np.zeros((n, frames))
    for i, case in enumerate(cases):
        for row in frame_colour_kept(y[i], case.clip, world):
            for f, k in enumerate(row):
                if k is not None:
                    kept[i, f] += k
                    judged[i, f] += 1
    per_clip0 = {"kept": kept[:, 0], "judged": judged[:, 0]}
    rest = {"kept": kept[:, 1:].sum(1), "judged": judged[:, 1:].sum(1)}
    oracle = _oracle(bench.score_videos(y, cases, world))
    return {
        "clips": n, "frames": frames, "world": "v2", "stream": f"shapes/{split}", "case_seed": bench.SHAPESBENCH_SEED,
        "first_case": first,
        "psnr_db": round(psnr_db(mse_f.mean().item()), 2),
        "psnr_db_per_frame": [round(psnr_db(m), 2) for m in mse_f.tolist()],
        "colour_kept": round(kept.sum() / max(judged.sum(), 1), 4),
        "colour_kept_frame0": round(kept[:, 0].sum() / max(judged[:, 0].sum(), 1), 4),
        "colour_kept_frame0_interval": _interval(ratio_of_sums("kept", "judged"), per_clip0),
        "colour_kept_frames1+": round(rest["kept"].sum() / max(rest["judged"].sum(), 1), 4),
        "colour_kept_frames1+_interval": _interval(ratio_of_sums("kept", "judged"), rest),
        "colour_kept_per_frame": [round(k / max(j, 1), 3) for k, j in zip(kept.sum(0), judged.sum(0))],
        "colour_judged": int(judged.sum()),
        "oracle": oracle,
        "bar_ok": bar_ok(oracle),
        "ideal": _oracle(bench.score_videos(x, cases, world)),
    }


@torch.no_grad()
def decode_ms(vae, frames: int, repeats: int) -> float:
    """Median wall time of one `vae.decode` of a (1, z, 1 + (frames-1)/4, 8, 8) latent, in ms."""
    z = torch.randn(1, vae.config.z_dim, 1 + (frames - 1) // vae.config.scale_factor_temporal, 8, 8, generator=torch.Generator().manual_seed(0))
    vae.decode(z)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        vae.decode(z)
        times.append((time.perf_counter() - t) * 1e3)
    return round(sorted(times)[len(times) // 2], 1)


def measure(vae, clips: int = 24, repeats: int = 5, sets=tuple(SETS), split: str = SPLIT) -> dict:
    vae.eval()
    out = {name: score_set(vae, *SETS[name], clips, split) for name in SETS if name in sets}
    if repeats > 0:
        out["decode_ms"] = {"9": decode_ms(vae, 9, repeats), "17": decode_ms(vae, 17, repeats)}
    out["decoder_parameters"] = sum(p.numel() for p in vae.decoder.parameters())
    return out


def summary(held: dict) -> dict:
    """One line per set: the numbers a log or a table shows."""
    return {name: {"psnr_db": r["psnr_db"], "colour_kept_frame0": r["colour_kept_frame0"],
                   "colour_kept_frames1+": r["colour_kept_frames1+"],
                   **{k: r["oracle"][k]["value"] for k in ("direction", "speed_within_10pct", "colour", "ghost")},
                   "ghost_clips": r["oracle"]["num_ghost_clips"], "bar_ok": r["bar_ok"]}
            for name, r in held.items() if isinstance(r, dict) and "oracle" in r}


def main(argv=None) -> int:
    from fastlight.decoder.distill import resolve_vae_path
    from fastlight.decoder.prune import load_vae
    from fastlight.fileio import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="shapes-vae")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5, help="decode-time repeats (0: no timing)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--split", default=SPLIT, choices=HELD_OUT_SPLITS,
                    help="validation (what VAE runs are compared on) or test (report a VAE chosen on validation)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vae = load_vae(resolve_vae_path(args.vae))
    res = measure(vae, args.clips, args.repeats, tuple(args.sets.split(",")), args.split)
    res["vae"] = str(args.vae)
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(summary(res), indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
