"""Can the Shapes oracle read through a Shapes VAE? decode(encode(clip)) on held-out clips, per frame.

    nice -n 5 .venv/bin/python benchmarks/vae_oracle.py --vae shapes-vae --clips 24 --threads 1 \
        --out runs/vae2/oracle_old.json

Held-out sets (seed streams no training run uses: 5_000_011 + set index; training draws the seeds
10_000_000 * seed + step (first version) and 10_000_000 * (seed + 1) + step (train_shapes_vae.py now)):
  * `v1-9`: today's world at 64 px (what the shipped VAE was trained on), 9 frames;
  * `edge-9`, `edge-17`: `fastlight.shapes.clips.sample_edge_clips` (1-3 objects of radius 6-12 px
    starting from just inside to just past a border, entering / leaving, up to 3.5 px per frame), 9 and
    17 frames: what the next world shows.
Per set: PSNR per frame index (the whole-set MSE of that frame), the oracle (`fastlight.shapes.world
.check_clip` with the ideal rendering as ground truth) on the reconstruction: colour kept per frame
index (objects visible >= 60% in that frame whose tracked colour area is within [0.5, 2] x the ideal),
direction ok (over objects whose ideal rendering gives the prompted direction: ones that leave before
two clean frames are not judgeable), ghost-free clips; and the decode time of one 9- and one 17-frame
video (batch 1, `AutoencoderKLWan.decode`, median of `--repeats`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastlight.shapes.clips import ShapesClips  # noqa: E402
from fastlight.shapes.world import _full_area_px, check_clip, colour_alpha, render  # noqa: E402

HELD_OUT_SEED = 5_000_011
SETS = {"v1-9": ("v1", 9), "edge-9": ("edge", 9), "edge-17": ("edge", 17)}


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


def score_set(vae, sampler: str, frames: int, seed: int, n: int) -> dict:
    src = ShapesClips(size=64, num_frames=frames, sampler=sampler)
    clips, world = src.clips(seed, n), src.world()
    x = src.render(seed, n)
    y = reconstruct(vae, x)
    mse_f = ((y - x) ** 2).mean(dim=(0, 1, 3, 4))
    kept = [[0, 0] for _ in range(frames)]  # per frame: [kept, judged]
    dir_ok = dir_n = ghosts = 0
    for i, clip in enumerate(clips):
        for row in frame_colour_kept(y[i], clip, world):
            for f, k in enumerate(row):
                if k is not None:
                    kept[f][0] += k
                    kept[f][1] += 1
        ideal = check_clip(render(clip, world), clip, world)
        got = check_clip(y[i], clip, world)
        for io, go in zip(ideal["objects"], got["objects"]):
            if io["direction_ok"]:
                dir_n += 1
                dir_ok += go["direction_ok"]
        ghosts += got["ghost"] and not ideal["ghost"]
    k_all = sum(k for k, _ in kept), sum(j for _, j in kept)
    k_rest = sum(k for k, _ in kept[1:]), sum(j for _, j in kept[1:])
    return {
        "clips": n, "frames": frames, "sampler": sampler, "seed": seed,
        "psnr_db": round(psnr_db(mse_f.mean().item()), 2),
        "psnr_db_per_frame": [round(psnr_db(m), 2) for m in mse_f.tolist()],
        "colour_kept": round(k_all[0] / max(k_all[1], 1), 4),
        "colour_kept_frame0": round(kept[0][0] / max(kept[0][1], 1), 4),
        "colour_kept_frames1+": round(k_rest[0] / max(k_rest[1], 1), 4),
        "colour_kept_per_frame": [round(k / max(j, 1), 3) for k, j in kept],
        "colour_judged": k_all[1],
        "direction_ok": round(dir_ok / max(dir_n, 1), 4), "direction_judged": dir_n,
        "ghost_clips": ghosts,
    }


@torch.no_grad()
def decode_ms(vae, frames: int, repeats: int) -> float:
    """Median wall time of one `vae.decode` of a (1, z, 1 + (frames-1)/4, 8, 8) latent, in ms."""
    z = torch.randn(1, vae.config.z_dim, 1 + (frames - 1) // 4, 8, 8, generator=torch.Generator().manual_seed(0))
    vae.decode(z)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        vae.decode(z)
        times.append((time.perf_counter() - t) * 1e3)
    return round(sorted(times)[len(times) // 2], 1)


def measure(vae, clips: int = 24, repeats: int = 5, sets=tuple(SETS)) -> dict:
    vae.eval()
    out = {name: score_set(vae, *SETS[name], HELD_OUT_SEED + i, clips) for i, name in enumerate(SETS) if name in sets}
    out["decode_ms"] = {"9": decode_ms(vae, 9, repeats), "17": decode_ms(vae, 17, repeats)}
    out["decoder_parameters"] = sum(p.numel() for p in vae.decoder.parameters())
    return out


def main(argv=None) -> int:
    from fastlight.decoder.distill import resolve_vae_path
    from fastlight.decoder.prune import load_vae
    from fastlight.fileio import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="shapes-vae")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    vae = load_vae(resolve_vae_path(args.vae))
    res = measure(vae, args.clips, args.repeats, tuple(args.sets.split(",")))
    res["vae"] = str(args.vae)
    res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out), res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
