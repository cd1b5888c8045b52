"""`fastlight prune-decoder VAE --ratio R --out DIR` and `fastlight distill-decoder [config.yaml] [key=value ...]`."""
from __future__ import annotations

from fastlight.commands.options import config_and_overrides, finite_float, output_folder, whole_number


def run(a) -> None:
    from fastlight.decoder.prune_vae import prune_vae

    m = prune_vae(a.vae, a.ratio, a.out, calib=a.calib, latents=a.latents, seed=a.seed, overwrite=a.overwrite,
                  res_blocks=a.res_blocks, head=a.head)
    dim = m["config_change"]["decoder_base_dim"]
    layout = "" if a.head == "full" and a.res_blocks is None else f" (head {a.head}, res_blocks {m['num_res_blocks']})"
    print(f"decoder_base_dim {dim['from']} -> {dim['to']}{layout}: decoder {m['decoder_params_before']:,} -> "
          f"{m['decoder_params']:,} parameters (removed {m['achieved_ratio']:.1%}, target {m['target_ratio']:.0%}); "
          f"written to {a.out}")


def run_distill(a) -> None:
    from fastlight.decoder.distill import distill_decoder

    config, overrides = config_and_overrides(a)
    out = distill_decoder(config, overrides)
    print(f"distilled decoder written to {out}")


def add_parser(sub) -> None:
    s = sub.add_parser("prune-decoder", help="channel-prune an AutoencoderKLWan decoder (VDMini) into the same class")
    s.add_argument("vae", help="AutoencoderKLWan folder (e.g. Wan2.1-T2V-1.3B-Diffusers/vae) or 'shapes-vae'")
    s.add_argument("--ratio", type=finite_float, required=True,
                   help="fraction of the decoder's parameters to remove, in (0, 1)")
    s.add_argument("--out", type=output_folder, required=True, help="output folder (a stock AutoencoderKLWan folder + manifest.json)")
    s.add_argument("--calib", type=whole_number, default=16, help="calibration latents for the channel scores")
    s.add_argument("--latents", default="shapes",
                   help="calibration latents: a clip source, e.g. 'shapes' (the VAE's encoder on its clips), a "
                        "`fastlight preprocess` folder or a safetensors file with `latents` (normalised)")
    s.add_argument("--head", choices=("full", "patch2"), default="full",
                   help="patch2: drop the full-resolution up stage for the stock 2x2 depth-to-space (patch_size=2); "
                        "a decode-only VAE, much faster (benchmarks/decoder_configs.py)")
    s.add_argument("--res-blocks", type=whole_number, default=None,
                   help="resnets per up block (num_res_blocks, <= the VAE's; default: the VAE's); a decode-only VAE")
    s.add_argument("--seed", type=whole_number, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=run)

    s = sub.add_parser("distill-decoder", help="train a light decoder to reproduce the teacher VAE decoder, resumable")
    s.add_argument("config", nargs="?", default=None, help="YAML, e.g. configs/shapes/decoder.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=run_distill)
