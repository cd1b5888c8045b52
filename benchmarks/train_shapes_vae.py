"""Train the small Shapes-world `AutoencoderKLWan` shipped in fastlight/assets/shapes_vae/.

    OMP_NUM_THREADS=1 nohup taskset -c 1 .venv/bin/python benchmarks/train_shapes_vae.py \
        --time-conv-init identity --minutes 50 --threads 1 --out runs/vae3/vae --log runs/vae3/train.log &

A stock diffusers `AutoencoderKLWan` (the Wan 2.1 VAE class: 8x spatial, 4x temporal compression,
causal 3-D convolutions) with small widths, trained on 64x64 Shapes clips and used deterministically
(encode -> posterior mean -> decode). Clips (v3): the **v2 world** (`fastlight.shapes.world.WORLDS["v2"]`:
1-3 objects of radius 7-10 px, speeds 1 / 2 / 3.5 px per frame, entering and leaving the frame), the
world the latent teacher is trained in, drawn fresh every step from the **train stream** only
(`fastlight.shapes.clips.v2_stream_clips(seed, "shapes/train", step, n)`: the clips of
`ShapesSource(world="v2", seed=seed, stream="train").batch(step)`), with clip lengths cycling through
`--frames` (default 1, 9, 17, 5, 9, 17: the teacher's 9 and 17 frames, single images for the causal
first frame's own path, 5 frames as a short clip). The held-out measurement (benchmarks/vae_oracle.py)
uses ShapesBench's `shapes/validation` cases, another stream namespace of `fastlight.data.source`, so
no training clip is among them. No v1 clips: nothing needs the VAE good on v1 (the decoder study's
tests build their own tiny VAEs; the README's decoder-speed table was measured on the first version).

Loss = pixel L1 + MSE of the decoded posterior mean (object pixels and a 1-px rim weighted
`--fg-weight`), averaged per frame and then over frames with frame 0 weighted `--frame0-weight`, +
1e-4 * mean(latent^2) (a plain autoencoder: the Wan recipe's 1e-6 KL term is negligible, and decoding
posterior samples stalled at the background-only PSNR). Frame 0's weight is 2 (v2: 3): with the
temporal resampling convs initialised to the identity (`--time-conv-init identity`, a fresh run's
default) frame 0 no longer reaches the later layers in another feature basis, so it needs no large
weight to catch up; it keeps a little extra because it is the image condition the teacher is given
and where the oracle pins each object. The run stops at `--steps` or after `--minutes` of wall time,
then measures the weights as stored (float16) on the held-out sets, and the per-channel latent mean /
std on train-stream clips (the config's `latents_mean` / `latents_std`, the Wan normalisation).
Weights are saved in float16 (load with `AutoencoderKLWan.from_pretrained(dir,
torch_dtype=torch.float32)` or `fastlight.decoder.load_vae`). `manifest.json` records the config,
phases (command, steps, wall and CPU time, the CPUs the process could use, load average), the loss
curve and the held-out numbers.

The first version (23.5 dB, `--frames 5,5,5,9 --frame0-weight 0`: the old per-pixel mean, v1 clips only)
lost frame 0's colour; why, and the measurement, are in the README's Decoder section.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastlight.decoder.distill import decode_raw  # noqa: E402
from fastlight.fileio import atomic_dir  # noqa: E402
from fastlight.shapes.clips import v2_stream_clips, v2_world  # noqa: E402
from fastlight.shapes.world import BACKGROUND, render_batch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vae_oracle  # noqa: E402  (benchmarks/vae_oracle.py: the held-out measurement)

SIZE, FRAMES = 64, 9
VAE_CONFIG = dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1,
                  temperal_downsample=[False, True, True])
BG = torch.tensor(BACKGROUND).view(1, 3, 1, 1, 1) * 2 - 1
TRAIN_STREAM = "shapes/train"  # ShapesSource's train namespace; held-out sets: shapes/validation (vae_oracle.py)
WORLD = v2_world(FRAMES)
CLIP_WORLD = {"world": "v2", "size": SIZE, "num_frames": FRAMES, "radius_px": [WORLD.radius_min_px, WORLD.radius_max_px],
              "sampler": "v2"}  # what `ShapesClips.for_vae` (prune / distill-decoder calibration) draws


def train_clips(seed: int, step: int, n: int, num_frames: int) -> torch.Tensor:
    """Step `step`'s training clips: rows 0..n-1 of the v2 world's train stream, rendered at `num_frames`."""
    return render_batch(v2_stream_clips(seed, TRAIN_STREAM, step, n), v2_world(num_frames))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for videos in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.float() - b.float()) ** 2).mean().item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def frame_losses(y: torch.Tensor, x: torch.Tensor, fg_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Object-weighted L1 and MSE per frame, (F,) each. Objects are ~10% of the pixels: weight them
    (and a 1-px rim) `fg_weight` x, else the first few hundred steps only learn the background."""
    fg = ((x - BG).abs().sum(1, keepdim=True) > 0.05).float()
    fg = torch.nn.functional.max_pool3d(fg, (1, 3, 3), 1, (0, 1, 1))
    w = 1 + (fg_weight - 1) * fg
    dims = (0, 1, 3, 4)
    norm = w.expand_as(x).sum(dims)
    return ((y - x).abs() * w).sum(dims) / norm, (((y - x) ** 2) * w).sum(dims) / norm


def frame_weights(num_frames: int, frame0_weight: float) -> torch.Tensor:
    """Per-frame loss weights, summing to 1; frame 0 (a latent frame of its own) gets `frame0_weight`."""
    w = torch.ones(num_frames)
    w[0] = frame0_weight
    return w / w.sum()


def identity_time_convs(vae) -> int:
    """Initialise every temporal resampling conv (`time_conv` of the encoder's downsample3d and the
    decoder's upsample3d) to pass its latest input frame through (each of the upsampler's two output
    copies too); returns how many. Why: the causal first chunk (frame 0) skips these convs in both the
    encoder and the decoder, so with the default random init every later frame reaches the following
    layers through a random channel mix that frame 0 never gets, and the same weights have to decode
    two different feature bases; the first version's frame 0 stayed ~5 dB behind (README, Decoder)."""
    n = 0
    for m in vae.modules():
        if getattr(m, "mode", None) in ("upsample3d", "downsample3d") and hasattr(m, "time_conv"):
            w = m.time_conv.weight  # (copies * C, C, 3, 1, 1); tap 2 is the newest frame (causal)
            c = w.shape[1]
            with torch.no_grad():
                w.zero_()
                m.time_conv.bias.zero_()
                for k in range(w.shape[0] // c):
                    w[k * c:(k + 1) * c, :, 2, 0, 0] = torch.eye(c)
            n += 1
    return n


ENCODER_MODULES = ("encoder", "quant_conv")  # what maps pixels to the posterior: frozen by --freeze-encoder


def trained_parameters(vae, freeze_encoder: bool) -> list[torch.nn.Parameter]:
    """The parameters a phase trains (all, or with `freeze_encoder` the decoder side only: post_quant_conv
    and the decoder, so every latent, and a latent teacher trained on them, stays as it was); the rest
    get requires_grad False."""
    out = []
    for name, prm in vae.named_parameters():
        train = not (freeze_encoder and name.split(".")[0] in ENCODER_MODULES)
        prm.requires_grad_(train)
        if train:
            out.append(prm)
    return out


def fp16_round_trip(vae):
    """The weights as shipped: float16 on disk, read back as float32."""
    for prm in vae.parameters():
        prm.data = prm.data.half().float()
    return vae


@torch.no_grad()
def latent_stats(vae, seed: int, n: int = 16) -> dict:
    """Per-channel mean / std of posterior means of `n` 17-frame train-stream clips (steps 0..n-1, row 0:
    the latents the teacher is trained on come from this stream), and the std per latent frame index
    (frame 0 is encoded alone)."""
    x = torch.cat([train_clips(seed, k, 1, 17) for k in range(n)])
    z = torch.cat([vae.encode(x[i:i + 4]).latent_dist.mean for i in range(0, n, 4)])
    return {"latents_mean": z.mean(dim=(0, 2, 3, 4)).tolist(), "latents_std": z.std(dim=(0, 2, 3, 4)).tolist(),
            "std_per_latent_frame": [round(z[:, :, t].std().item(), 3) for t in range(z.shape[2])]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="fastlight/assets/shapes_vae")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=35.0)
    ap.add_argument("--batch", type=int, default=2, help="clips per step (1-frame steps use 4x as many)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-4, help="weight of the latent L2 penalty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="continue from a folder this script wrote (a further phase)")
    ap.add_argument("--fg-weight", type=float, default=10.0, help="loss weight of object pixels")
    ap.add_argument("--frames", default="1,9,17,5,9,17", help="clip lengths, cycled step by step")
    ap.add_argument("--frame0-weight", type=float, default=2.0,
                    help="frame 0's weight in the per-frame mean (others 1); 0 = the first version's plain pixel mean")
    ap.add_argument("--time-conv-init", choices=("identity", "default"), default="identity",
                    help="a fresh run's temporal resampling convs (see identity_time_convs; ignored with --init)")
    ap.add_argument("--temporal-downsample", default=None,
                    help="a fresh run's temperal_downsample per encoder stage, e.g. F,F,T (2x in time; default "
                         "F,T,T: Wan's 4x); the stock pipelines need a temporal factor >= 2")
    ap.add_argument("--init-weights", default=None,
                    help="a fresh run (its own config) starting from this VAE folder's tensors of the same name and "
                         "shape, the temporal resampling convs excepted (those start as --time-conv-init)")
    ap.add_argument("--reset-time-convs", action="store_true",
                    help="with --init: set the loaded VAE's temporal resampling convs to the identity, keep the rest")
    ap.add_argument("--freeze-encoder", action="store_true",
                    help="train the decoder only (with --init): the latents, and so a latent teacher trained on "
                         "them, stay valid")
    ap.add_argument("--eval-clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5, help="decode-time repeats of the measurement (0: none)")
    ap.add_argument("--eval-sets", default=",".join(vae_oracle.SETS), help="held-out sets to measure (v2-9 first)")
    ap.add_argument("--stats-clips", type=int, default=16, help="train-stream clips for latents_mean / latents_std")
    ap.add_argument("--eval-only", action="store_true", help="measure --init on the held-out sets and stop")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine two threads ran 3x slower per step)")
    ap.add_argument("--log", default=None, help="progress log file (default: stdout only)")
    ap.add_argument("--machine", default="2-core CPU shared with the lead's training job and 3 other helpers' jobs "
                                         "(not alone), 1 thread, float32",
                    help="the machine as the manifest states it (the load average is measured)")
    args = ap.parse_args(argv)

    from diffusers import AutoencoderKLWan

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cycle = [int(f) for f in args.frames.split(",")]
    vae_config = dict(VAE_CONFIG)
    if args.temporal_downsample:
        flags = [f.strip().upper() in ("T", "TRUE", "1") for f in args.temporal_downsample.split(",")]
        factor = 2 ** sum(flags)
        if len(flags) != len(VAE_CONFIG["dim_mult"]) - 1 or factor < 2:
            ap.error(f"--temporal-downsample needs {len(VAE_CONFIG['dim_mult']) - 1} flags with at least one T")
        vae_config |= {"temperal_downsample": flags, "scale_factor_temporal": factor}
    cfg = dict(vae_config, latents_mean=[0.0] * VAE_CONFIG["z_dim"], latents_std=[1.0] * VAE_CONFIG["z_dim"])
    vae = AutoencoderKLWan(**cfg)
    copied = None
    if args.init_weights and not args.init:
        src = AutoencoderKLWan.from_pretrained(args.init_weights, torch_dtype=torch.float32).state_dict()
        own = vae.state_dict()
        shared = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape and "time_conv" not in k}
        vae.load_state_dict(shared, strict=False)
        copied = {"from": args.init_weights, "tensors": len(shared), "of": len(own)}
        print(f"copied {len(shared)} of {len(own)} tensors from {args.init_weights}", flush=True)
    if args.time_conv_init == "identity" and not args.init:
        identity_time_convs(vae)
    phases, step0, curve0 = [], 0, []
    if args.init:  # continue a finished run (its weights; data seeds go on from its last step)
        prev = json.loads((Path(args.init) / "manifest.json").read_text())
        vae = AutoencoderKLWan.from_pretrained(args.init, torch_dtype=torch.float32)
        vae_config = {k: vae.config[k] for k in VAE_CONFIG} | {"scale_factor_temporal": vae.config.scale_factor_temporal}
        vae.register_to_config(latents_mean=[0.0] * VAE_CONFIG["z_dim"], latents_std=[1.0] * VAE_CONFIG["z_dim"])
        phases = prev.get("phases", [{k: prev["train"][k] for k in ("steps", "lr", "wall_time_s")}])
        step0, curve0 = prev["train"]["steps"], prev.get("loss_curve", [])
        if args.reset_time_convs:
            identity_time_convs(vae)
    if args.eval_only:
        print(json.dumps(vae_oracle.measure(vae.eval(), args.eval_clips, repeats=args.repeats,
                                            sets=tuple(args.eval_sets.split(","))), indent=1))
        return 0
    if args.freeze_encoder and not args.init:
        ap.error("--freeze-encoder continues a trained VAE: pass --init")
    trained = trained_parameters(vae, args.freeze_encoder)
    opt = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    log = open(args.log, "a") if args.log else None

    def say(msg: str) -> None:
        print(msg, flush=True)
        if log:
            log.write(msg + "\n")
            log.flush()

    load0 = os.getloadavg()
    t0, cpu0 = time.time(), time.process_time()
    budget = args.minutes * 60
    curve = list(curve0)
    step = step0
    warm = 50
    vae.train()
    while step - step0 < args.steps and time.time() - t0 < budget:
        # cosine on the *time* budget (the step count reached is not known in advance)
        frac = min(1.0, max((step - step0) / args.steps, (time.time() - t0) / budget))
        lr = args.lr * min(1.0, (step - step0 + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        frames = cycle[(step - step0) % len(cycle)]
        # the train stream, step `step` (continued phases go on from the last step: fresh clips)
        x = train_clips(args.seed, step, args.batch * (4 if frames == 1 else 1), frames)
        with torch.set_grad_enabled(not args.freeze_encoder):
            post = vae.encode(x).latent_dist
        # decode the posterior *mean*: decoding samples (std ~ 1 at init, KL weight 1e-6) sat at the
        # background-only 15 dB for 250 steps, the decoder ignoring the noisy latent
        y = decode_raw(vae, post.mean)  # vae.decode without its final clamp: no dead gradients at +-1
        l1_f, mse_f = frame_losses(y, x, args.fg_weight)
        if args.frame0_weight > 0:
            fw = frame_weights(frames, args.frame0_weight)
            l1, mse = (l1_f * fw).sum(), (mse_f * fw).sum()
        else:
            l1, mse = l1_f.mean(), mse_f.mean()
        reg = post.mean.pow(2).mean()  # keeps the latent scale bounded (what the KL's mean term does)
        loss = l1 + mse + args.kl * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == step0 + 1:
            yc = y.detach().clamp(-1, 1)
            rec = {"step": step, "phase": len(phases), "frames": frames, "loss": round(loss.item(), 5),
                   "l1": round(l1.item(), 5), "psnr_train_db": round(psnr(yc, x), 2),
                   "psnr_train_frame0_db": round(psnr(yc[:, :, :1], x[:, :, :1]), 2), "lr": lr,
                   "wall_s": round(time.time() - t0, 1)}
            curve.append(rec)
            say(json.dumps(rec))
    wall = time.time() - t0
    phases.append({"steps": step - step0, "lr": args.lr, "wall_time_s": round(wall, 1),
                   "cpu_time_s": round(time.process_time() - cpu0, 1), "frames": cycle,
                   "frame0_weight": args.frame0_weight,
                   "trained": "decoder and post_quant_conv (encoder frozen)" if args.freeze_encoder else "all",
                   "init_weights": copied,
                   "time_conv_init": ("--init's, reset to identity" if args.reset_time_convs else "from --init")
                   if args.init else args.time_conv_init,
                   "sampler": f"v2 world, stream {TRAIN_STREAM} of seed {args.seed}",
                   "cpus_allowed": sorted(os.sched_getaffinity(0)),
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                   "load_average_1min_start_end": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
                   "machine": args.machine,
                   "command": "benchmarks/train_shapes_vae.py " + " ".join(argv if argv is not None else sys.argv[1:])})
    vae.eval()
    x = render_batch([c.clip for c in vae_oracle.heldout_cases(FRAMES, 0, 8)], WORLD)
    fp32_db = psnr(vae_oracle.reconstruct(vae, x), x)
    fp16_round_trip(vae)
    fp16_db = psnr(vae_oracle.reconstruct(vae, x), x)
    say(f"done: {step} steps, this phase {wall:.0f} s; v2-9 PSNR (8 clips) float32 {fp32_db:.2f} dB, "
        f"as stored in float16 {fp16_db:.2f} dB; measuring the held-out sets")
    held = vae_oracle.measure(vae, args.eval_clips, repeats=args.repeats, sets=tuple(args.eval_sets.split(",")))
    stats = latent_stats(vae, args.seed, args.stats_clips)
    say(json.dumps(vae_oracle.summary(held)))
    vae.register_to_config(latents_mean=[round(v, 5) for v in stats["latents_mean"]],
                           latents_std=[round(v, 5) for v in stats["latents_std"]])
    manifest = {
        "what": "Shapes-world AutoencoderKLWan (teacher decoder for fastlight prune-decoder / distill-decoder)",
        "command": " && ".join(ph["command"] for ph in phases if "command" in ph),
        "class": "diffusers.AutoencoderKLWan", "config": vae_config, "dtype_on_disk": "float16",
        "parameters": sum(p.numel() for p in vae.parameters()),
        "decoder_parameters": sum(p.numel() for p in vae.decoder.parameters()),
        "world": CLIP_WORLD,
        "latent_shape": [VAE_CONFIG["z_dim"], 1 + (FRAMES - 1) // vae.config.scale_factor_temporal, SIZE // 8, SIZE // 8],
        "train": {"steps": step, "batch": args.batch, "frames": cycle, "lr": args.lr, "kl_weight": args.kl,
                  "seed": args.seed, "fg_weight": args.fg_weight, "frame0_weight": args.frame0_weight,
                  "loss": "object-weighted L1 + MSE per frame, frames averaged with frame 0 weighted frame0_weight, "
                          "+ kl_weight * mean(posterior_mean^2), decoded from the posterior mean",
                  "wall_time_s": round(sum(ph["wall_time_s"] for ph in phases), 1),
                  "date": time.strftime("%Y-%m-%d"), "machine": args.machine},
        "phases": phases,
        "held_out": {"what": "benchmarks/vae_oracle.py on the weights as stored (float16)",
                     "psnr_db": held["v2-9"]["psnr_db"], "fp32_vs_fp16_v2_9_8clips_db": [round(fp32_db, 2), round(fp16_db, 2)],
                     **held, "latent_std_per_latent_frame": stats["std_per_latent_frame"]},
        "loss_curve": curve,
    }
    with atomic_dir(args.out) as tmp:
        vae.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        for f in tmp.iterdir():  # safetensors writes 0600; the asset is read by everyone
            f.chmod(0o644)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
