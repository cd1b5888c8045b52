"""The light decoder on Shapes v2 latents: a latent pool for distillation, then quality vs the full decoder.

    # 1. pools: the teacher VAE's encoder (posterior mean) on v2-world clips (9 frames), normalised as the
    #    Wan pipelines store latents; a train pool and a held-out pool (its own seed stream) with its clips
    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/light_decoder_shapes.py pool --out runs/lightdec
    # 2. prune + distil (the decoder stage's recipe, on the train pool)
    fastlight prune-decoder ... / fastlight.decoder.stage settings (see the README of this session's report)
    # 3. quality on the held-out pool: PSNR vs the full decoder and vs the clips, and the Shapes oracle
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/light_decoder_shapes.py eval --out runs/lightdec \
        --light "light=runs/lightdec/distill/model"

PSNR rows: mean over held-out clips with a 95% bootstrap interval (clips resampled, 2,000 draws, seed 0).
Oracle: `fastlight.shapes.world` measurement of each decoded clip against its description (colour kept and
direction), the share of objects passing, with its 95% Wilson interval; the clips themselves and the full
decoder's output are the reference rows.
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
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAIN_SEED, HELD_OUT_SEED = 5_100_003, 5_200_009


def _world():
    from fastlight.shapes.world import world_from_name

    return world_from_name("v2", num_frames=9)


def _pool(vae, seed: int, n: int, batch: int = 8):
    from fastlight.shapes.world import render_batch, sample_clips

    world = _world()
    clips = sample_clips(seed, n, world)
    xs, zs = [], []
    with torch.no_grad():
        for i in range(0, n, batch):
            x = render_batch(clips[i:i + batch], world)
            xs.append(x)
            zs.append(vae.encode(x).latent_dist.mean)
    return clips, torch.cat(xs), torch.cat(zs)


def _normalise(vae, z):
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    return (z - mean) / std


def cmd_pool(a) -> None:
    from fastlight.decoder.distill import resolve_vae_path
    from fastlight.decoder.prune import load_vae

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(resolve_vae_path(a.teacher))
    t0 = time.time()
    _, _, z = _pool(vae, TRAIN_SEED, a.train)
    save_file({"latents": _normalise(vae, z).contiguous()}, str(out / "train_latents.safetensors"))
    _, x, zh = _pool(vae, HELD_OUT_SEED, a.held_out)
    save_file({"latents": _normalise(vae, zh).contiguous(), "clips": x.contiguous()},
              str(out / "held_out.safetensors"))
    print(f"pools written to {out} ({a.train} + {a.held_out} clips, {time.time() - t0:.0f} s)")


def _boot(values: np.ndarray, draws: int = 2000, digits: int = 2) -> list[float]:
    g = np.random.default_rng(0)
    means = values[g.integers(0, len(values), (draws, len(values)))].mean(1)
    return [round(float(np.percentile(means, 2.5)), digits), round(float(np.percentile(means, 97.5)), digits)]


def _wilson(k: int, n: int) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    z, p = 1.96, k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(c - h, 3), round(c + h, 3)]


def _psnr_per_clip(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return (10 * torch.log10(4.0 / mse)).numpy()


def _oracle(videos: torch.Tensor, clips) -> dict:
    """The v2 oracle (`check_clip`) on decoded clips: mean colour-kept fraction per object, direction ok over
    the objects whose ideal rendering gives the prompted direction (as benchmarks/vae_oracle.py), ghost-free
    clips; Wilson 95% intervals on the counts, a bootstrap one on the colour mean."""
    from fastlight.shapes.world import check_clip, render

    world = _world()
    colour, d_ok, d_n, clean = [], 0, 0, 0
    for v, c in zip(videos, clips):
        got, ideal = check_clip(v.clamp(-1, 1), c, world), check_clip(render(c, world), c, world)
        for go, io in zip(got["objects"], ideal["objects"]):
            colour.append(go["colour_kept"])
            if io["direction_ok"]:
                d_n += 1
                d_ok += bool(go["direction_ok"])
        clean += not got["ghost"]
    colour = np.asarray(colour, dtype=float)
    return {"objects": len(colour), "colour_kept": round(float(colour.mean()), 3), "colour_kept_ci95": _boot(colour, 2000, 3),
            "direction": round(d_ok / max(d_n, 1), 3), "direction_ci95": _wilson(d_ok, d_n), "direction_judged": d_n,
            "ghost_free_clips": clean, "ghost_free_ci95": _wilson(clean, len(clips))}


def cmd_eval(a) -> None:
    from fastlight.decoder.distill import denormalise, load_light_decoder, resolve_vae_path
    from fastlight.decoder.prune import count, load_vae
    from fastlight.shapes.world import sample_clips

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    teacher = load_vae(resolve_vae_path(a.teacher))
    held = load_file(str(out / "held_out.safetensors"))
    z, x = denormalise(teacher, held["latents"]), held["clips"]
    clips = sample_clips(HELD_OUT_SEED, z.shape[0], _world())
    models = {"full decoder": teacher}
    for spec in a.light:
        name, _, path = spec.rpartition("=")
        models[name or path] = load_light_decoder(path)
    outs = {}
    with torch.no_grad():
        for name, m in models.items():
            outs[name] = torch.cat([m.decode(z[i:i + 4]).sample for i in range(0, z.shape[0], 4)])
    rows = [{"decoder": "clips (no decoder)", "oracle": _oracle(x, clips) if a.oracle else None}]
    for name, m in models.items():
        vs_t = _psnr_per_clip(outs[name], outs["full decoder"])
        vs_x = _psnr_per_clip(outs[name], x)
        rows.append({"decoder": name, "decoder_params": count(m.decoder) if hasattr(m, "decoder") else count(m),
                     "psnr_vs_full_db": None if name == "full decoder" else round(float(vs_t.mean()), 2),
                     "psnr_vs_full_ci95": None if name == "full decoder" else _boot(vs_t),
                     "psnr_vs_clips_db": round(float(vs_x.mean()), 2), "psnr_vs_clips_ci95": _boot(vs_x),
                     "oracle": _oracle(outs[name], clips) if a.oracle else None})
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "teacher": a.teacher,
              "held_out_clips": int(z.shape[0]), "held_out_seed": HELD_OUT_SEED, "world": "v2, 9 frames", "rows": rows}
    (out / "quality.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| decoder | params | PSNR vs full decoder (95% CI) | PSNR vs clips (95% CI) | colour kept | direction |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        o = r["oracle"] or {}
        pv = "-" if r.get("psnr_vs_full_db") is None else f"{r['psnr_vs_full_db']:.2f} {r['psnr_vs_full_ci95']}"
        px = "-" if "psnr_vs_clips_db" not in r else f"{r['psnr_vs_clips_db']:.2f} {r['psnr_vs_clips_ci95']}"
        col = f"{o['colour_kept']:.3f} {o['colour_kept_ci95']}" if o else "-"
        dr = f"{o['direction']:.3f} {o['direction_ci95']}" if o else "-"
        print(f"| {r['decoder']} | {r.get('decoder_params', '-')} | {pv} | {px} | {col} | {dr} |")
    print(f"written to {out / 'quality.json'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pool")
    p.add_argument("--train", type=int, default=384)
    p.add_argument("--held-out", type=int, default=64)
    e = sub.add_parser("eval")
    e.add_argument("--light", action="append", default=[], help="NAME=FOLDER (repeatable)")
    e.add_argument("--no-oracle", dest="oracle", action="store_false")
    for s in (p, e):
        s.add_argument("--teacher", default="shapes-vae")
        s.add_argument("--out", default="runs/lightdec")
        s.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    {"pool": cmd_pool, "eval": cmd_eval}[a.cmd](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
