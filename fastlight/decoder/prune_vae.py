"""The component of `fastlight prune-decoder`: score, prune and write a decoder (the verb: fastlight/commands/decoder.py)."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from fastlight.errors import InputError, make_parent_dir


def prune_vae(vae_dir, ratio: float, out_dir, calib: int = 16, latents: str = "shapes", seed: int = 0,
              overwrite: bool = False, progress: bool = True, res_blocks: int | None = None,
              head: str = "full") -> dict:
    """Score the decoder's channels on calibration latents, prune to the parameter `ratio` in the light layout
    (`res_blocks` resnets per up block, None: the teacher's; `head` full or patch2: prune.py's light_config),
    write a stock AutoencoderKLWan folder + manifest.json to `out_dir` (atomically). Returns the manifest.
    `progress`: say what is scored."""
    from fastlight.decoder.distill import (_load_latent_file, clip_source, denormalise, is_clip_source,
                                           resolve_vae_path, shapes_latents)
    from fastlight.decoder.prune import channel_scores, check_latents, check_ratio, fit_head, load_vae, \
        plan_decoder, prune_decoder, read_vae_config, write_manifest

    ratio = check_ratio(ratio)
    src = resolve_vae_path(str(vae_dir))
    read_vae_config(src)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} is a file; pass a folder path")
    if out.resolve() == src.resolve() or out.resolve() in src.resolve().parents:
        raise InputError(f"output folder {out} is (or contains) the source VAE {src}; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"output folder {out} is not empty; choose another folder or pass --overwrite")
    if isinstance(calib, bool) or not isinstance(calib, int) or calib < 1:
        raise InputError(f"--calib must be an integer >= 1, got {calib!r}")
    t0 = time.time()
    vae = load_vae(src)
    plan = plan_decoder(vae, ratio, res_blocks, head)
    if is_clip_source(latents):
        z = shapes_latents(vae, clip_source(src, latents), 2_000_000 + seed, calib)[1]
        source = f"teacher encoder (posterior mean) on {calib} clips of the {latents!r} clip source, seed {2_000_000 + seed}"
    else:
        z = _load_latent_file(Path(latents))
        check_latents(vae, z, f"latents {latents}")
        z = denormalise(vae, z[:calib])
        source = f"{latents} (first {z.shape[0]}, de-normalised)"
    check_latents(vae, z, "calibration latents")
    if progress:
        print(f"scoring decoder channels on {z.shape[0]} calibration latents {tuple(z.shape[1:])} ...")
    scores = channel_scores(vae, z)
    light, info = prune_decoder(vae, plan["decoder_base_dim"], scores, res_blocks=res_blocks, head=head)
    head_init = None
    if "decoder.conv_out.weight" in info["fresh"]:  # a new head (patch2): its least-squares fit, not zero
        if progress:
            print("fitting the new conv_out head (least squares on the calibration latents) ...")
        head_init = {"method": "least squares on the calibration latents (prune.fit_head)", **fit_head(light, vae, z)}
    manifest = {
        "what": "AutoencoderKLWan with a channel-pruned decoder (fastlight prune-decoder)",
        "source": str(src), "class": "diffusers.AutoencoderKLWan",
        "config_change": {**info["config_change"],
                          "decoder_base_dim": {"from": plan["decoder_base_dim_before"], "to": plan["decoder_base_dim"]}},
        "head": head, "num_res_blocks": plan["num_res_blocks"], "encoder": info["encoder"], "fresh": info["fresh"],
        "target_ratio": ratio, "achieved_ratio": plan["achieved_ratio"], "width_keep": plan["width_keep"],
        "decoder_params_before": info["decoder_params_before"], "decoder_params": info["decoder_params"],
        "params_before": info["params_before"], "params": info["params"],
        "criterion": "per channel: L2 norm of its activation (sqrt mean a^2) on the calibration latents, summed "
                     "over the group's sites; top-k per channel group, k = the group's width in the pruned config",
        "calibration": source, "seconds": round(time.time() - t0, 1),
        "kept_channels": info["kept_channels"],
    }
    if head_init is not None:
        manifest["head_init"] = head_init
    if info["encoder"] == "placeholder":
        manifest["use"] = ("decode only: the light config changes what the stock class shares with the encoder, so "
                           "this folder's encoder is an untrained placeholder; encode with the source VAE")
    make_parent_dir(out, "--out")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        light.save_pretrained(tmp, safe_serialization=True)
        write_manifest(tmp, manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
