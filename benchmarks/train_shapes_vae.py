"""Train the small Shapes-world `AutoencoderKLWan` shipped in fastlight/assets/shapes_vae/.

    nice -n 5 .venv/bin/python benchmarks/train_shapes_vae.py --minutes 18 --out fastlight/assets/shapes_vae
    nice -n 5 .venv/bin/python benchmarks/train_shapes_vae.py --init fastlight/assets/shapes_vae --minutes 5 \
        --lr 3e-4 --out fastlight/assets/shapes_vae          # the shipped asset: these two phases (23 min)

A stock diffusers `AutoencoderKLWan` (the Wan 2.1 VAE class: 8x spatial, 4x temporal compression,
causal 3-D convolutions) with small widths, trained on Shapes-world clips of 9 frames at 64x64
(latent 16 x 3 x 8 x 8), used deterministically (encode -> posterior mean -> decode); to fit the CPU budget 3 steps in 4 use 5-frame clips (latent T = 2, the
causal decoder's first chunk and one cached chunk) and every 4th step the full 9 frames. Fresh clips
every step (data seed = step), loss = pixel L1 + MSE of the decoded
posterior mean (object pixels weighted 10x) + 1e-4 * mean(latent^2) (a plain autoencoder: the Wan recipe's 1e-6 KL term is
negligible, and decoding posterior samples stalled at the background-only PSNR, see main()). The run stops at
`--steps` or after `--minutes` of wall time, whichever comes first, then measures the reconstruction
PSNR (posterior mean, decode, clamp) on held-out clips (their own seed stream) and the per-channel
latent mean / std on those clips (written into the config's `latents_mean` / `latents_std`, the
Wan normalisation). Weights are saved in float16 (half the size; load with
`AutoencoderKLWan.from_pretrained(dir, torch_dtype=torch.float32)` or `fastlight.decoder.load_vae`).
`manifest.json` records the config, steps, wall time, loss curve and PSNR.
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

from fastlight.decoder.distill import decode_raw  # noqa: E402
from fastlight.shapes.world import BACKGROUND, render_batch, sample_clips, WorldConfig  # noqa: E402

SIZE, FRAMES = 64, 9
VAE_CONFIG = dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                  temperal_downsample=[False, True, True])
HELD_OUT_SEED = 1_000_003
BG = torch.tensor(BACKGROUND).view(1, 3, 1, 1, 1) * 2 - 1


def world(num_frames: int = FRAMES) -> WorldConfig:
    s = SIZE / 24  # the 24 px world's object sizes, scaled to 64 px
    return WorldConfig(size=SIZE, num_frames=num_frames, radius_min_px=3.5 * s, radius_max_px=4.5 * s)


def clips(seed: int, n: int, num_frames: int = FRAMES) -> torch.Tensor:
    return render_batch(sample_clips(seed, n, world(num_frames)), world(num_frames))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for videos in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


@torch.no_grad()
def evaluate(vae, n: int = 16) -> dict:
    vae.eval()
    x = clips(HELD_OUT_SEED, n)
    z = vae.encode(x).latent_dist.mean
    y = vae.decode(z).sample
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4))
    vae.train()
    return {"psnr_db": psnr(y, x), "latents_mean": mean.tolist(), "latents_std": std.tolist()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="fastlight/assets/shapes_vae")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--minutes", type=float, default=22.0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-4, help="weight of the latent L2 penalty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="continue from a folder this script wrote (a second phase)")
    ap.add_argument("--fg-weight", type=float, default=10.0, help="loss weight of object pixels")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine two threads ran 3x slower per step)")
    ap.add_argument("--log", default=None, help="progress log file (default: stdout only)")
    args = ap.parse_args(argv)

    from diffusers import AutoencoderKLWan

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = dict(VAE_CONFIG, latents_mean=[0.0] * VAE_CONFIG["z_dim"], latents_std=[1.0] * VAE_CONFIG["z_dim"])
    vae = AutoencoderKLWan(**cfg)
    phases, step0, curve0 = [], 0, []
    if args.init:  # continue a finished run (its weights; data seeds go on from its last step)
        prev = json.loads((Path(args.init) / "manifest.json").read_text())
        vae = AutoencoderKLWan.from_pretrained(args.init, torch_dtype=torch.float32)
        vae.register_to_config(latents_mean=[0.0] * VAE_CONFIG["z_dim"], latents_std=[1.0] * VAE_CONFIG["z_dim"])
        phases = prev.get("phases", [{k: prev["train"][k] for k in ("steps", "lr", "wall_time_s")}])
        step0, curve0 = prev["train"]["steps"], prev.get("loss_curve", [])
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    log = open(args.log, "a") if args.log else None

    def say(msg: str) -> None:
        print(msg, flush=True)
        if log:
            log.write(msg + "\n")
            log.flush()

    t0 = time.time()
    budget = args.minutes * 60
    curve = list(curve0)
    step = step0
    warm = 50
    while step - step0 < args.steps and time.time() - t0 < budget:
        # cosine on the *time* budget (the step count reached is not known in advance)
        frac = min(1.0, max((step - step0) / args.steps, (time.time() - t0) / budget))
        lr = args.lr * min(1.0, (step - step0 + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        # 3 steps in 4 on 5-frame clips (latent T = 2: half the cost), every 4th on the full 9 frames
        frames = FRAMES if step % 4 == 3 else 5
        x = clips(args.seed * 10_000_000 + step, args.batch, frames)
        post = vae.encode(x).latent_dist
        # decode the posterior *mean*: a first run that decoded samples (std ~ 1 at init, KL weight 1e-6)
        # sat at the background-only 15 dB for 250 steps, the decoder ignoring the noisy latent
        y = decode_raw(vae, post.mean)  # vae.decode without its final clamp: no dead gradients at +-1
        # objects are ~11% of the pixels: weight them (and a 1-px rim) 10x, else the first few hundred
        # steps only learn the background (15.4 dB, where two unweighted runs sat for 250 steps)
        fg = ((x - BG).abs().sum(1, keepdim=True) > 0.05).float()
        fg = torch.nn.functional.max_pool3d(fg, (1, 3, 3), 1, (0, 1, 1))
        w = 1 + (args.fg_weight - 1) * fg
        l1 = ((y - x).abs() * w).mean() / w.mean()
        mse = (((y - x) ** 2) * w).mean() / w.mean()
        reg = post.mean.pow(2).mean()  # keeps the latent scale bounded (what the KL's mean term does)
        loss = l1 + mse + args.kl * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == 1:
            rec = {"step": step, "phase": len(phases), "loss": round(loss.item(), 5), "l1": round(l1.item(), 5),
                   "psnr_train_db": round(psnr(y.detach().clamp(-1, 1), x), 2), "lr": lr,
                   "wall_s": round(time.time() - t0, 1)}
            curve.append(rec)
            say(json.dumps(rec))
    wall = time.time() - t0
    phases.append({"steps": step - step0, "lr": args.lr, "wall_time_s": round(wall, 1)})
    wall = sum(p["wall_time_s"] for p in phases)
    ev = evaluate(vae)
    say(f"done: {step} steps in {wall:.0f} s, held-out PSNR {ev['psnr_db']:.2f} dB")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vae.register_to_config(latents_mean=[round(v, 5) for v in ev["latents_mean"]],
                           latents_std=[round(v, 5) for v in ev["latents_std"]])
    vae.to(torch.float16).save_pretrained(out, safe_serialization=True)
    n_params = sum(p.numel() for p in vae.parameters())
    manifest = {
        "what": "Shapes-world AutoencoderKLWan (teacher decoder for fastlight prune-decoder / distill-decoder)",
        "command": "nice -n 5 .venv/bin/python benchmarks/train_shapes_vae.py " + " ".join(argv or sys.argv[1:]),
        "class": "diffusers.AutoencoderKLWan", "config": VAE_CONFIG, "dtype_on_disk": "float16",
        "parameters": n_params, "decoder_parameters": sum(p.numel() for p in vae.decoder.parameters()),
        "world": {"size": SIZE, "num_frames": FRAMES, "radius_px": [world().radius_min_px, world().radius_max_px]},
        "latent_shape": [VAE_CONFIG["z_dim"], 1 + (FRAMES - 1) // 4, SIZE // 8, SIZE // 8],
        "train": {"steps": step, "batch": args.batch, "frames": "5 (3 steps in 4), 9 (every 4th)", "lr": args.lr, "kl_weight": args.kl, "seed": args.seed,
                  "fg_weight": args.fg_weight, "loss": "object-weighted L1 + MSE + kl_weight * mean(posterior_mean^2), decoded from the posterior mean", "wall_time_s": round(wall, 1),
                  "date": time.strftime("%Y-%m-%d"), "machine": "2-core CPU (shared), float32"},
        "phases": phases,
        "held_out": {"seed": HELD_OUT_SEED, "clips": 16, "psnr_db": round(ev["psnr_db"], 2)},
        "loss_curve": curve,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
