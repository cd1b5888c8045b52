"""Channel pruning of the diffusers `AutoencoderKLWan` decoder (VDMini's decoder pruning).

    vae = load_vae("fastlight/assets/shapes_vae")
    plan = plan_decoder(vae, ratio=0.75)                 # decoder_base_dim for a parameter ratio
    scores = channel_scores(vae, calibration_latents)    # {group: (width,) L2 activation norms}
    light, info = prune_decoder(vae, plan["decoder_base_dim"], scores)
    light.save_pretrained(out)                           # a stock AutoencoderKLWan folder

What the class allows. `AutoencoderKLWan` has a `decoder_base_dim` argument: every decoder width is
`decoder_base_dim * m` for the multipliers `m` of `dim_mult` (the encoder keeps `base_dim`). So the
pruned decoder is the *same class with a smaller config* as long as every width shrinks by the same
factor d'/d; a different keep ratio per layer can not be expressed by the config (there is one
width knob), and neither can removing whole residual blocks of one stage (`num_res_blocks` is shared
with the encoder). Within that constraint the *which* channels is free: each width group below gets
its own top-k by score, so the surgery is a real per-layer channel selection, not a truncation.

Channel groups (Wan 2.1 decoder, `is_residual=False`). A *stream* group is a set of channels shared
by every tensor added into one residual stream: conv_in's output, each identity-shortcut resnet's
input and output, the attention block (its q, k, v and proj use the stream's indices), the RMS-norm
gains, and the upsampler's time_conv (whose 2C outputs are two copies of the stream's channels, one
per output frame). A resnet with in != out width (conv_shortcut) starts a new stream; an upsampler's
2-D conv starts a new stream (the next stage's input). Each resnet's hidden width (conv1 out, norm2,
conv2 in) is a group of its own.

Two more stock-config knobs make the decoder much faster than width alone (benchmarks/decoder_configs.py:
on CPU the Wan decoder's time is mostly spent per output position, in the RMS norms and batch-1 3-D convs at
the full-resolution stage, so narrowing it saves little). `light_config(cfg, d, res_blocks, head)`:
* `res_blocks` (config `num_res_blocks`, <= the teacher's): fewer resnets per up block; the first ones are kept.
* `head="patch2"`: the last (full-resolution) up stage is dropped and the decoder's 32x32 output becomes 2x2
  pixel patches (config `patch_size=2`, stock `unpatchify` in `AutoencoderKLWan._decode`: depth-to-space),
  with `dim_mult[1:]`, `temperal_downsample[1:]` (the dropped upsampling must be spatial only, as in Wan 2.1)
  and 4x the in/out channels. Same latents, same video shape, same class.
Both are shared with the encoder in the stock config, so such a VAE's encoder is an untrained placeholder
(`encoder: placeholder` in the manifest, base_dim = the decoder's): it is a decode-only VAE, as a
text-to-video pipeline uses it (encode with the full VAE). Its new layers (norm_out and conv_out, which
now sit on the 32x32 stream) start fresh: conv_out at zero from `prune_decoder`, then `fit_head` (what
`prune_vae` does) sets it to the least-squares fit of the teacher's video on the calibration latents.

Criterion (documented, `channel_scores`): the L2 norm of the channel's activation over calibration
latents, i.e. sqrt(mean over positions, frames and latents of a^2), summed over every site of the
group (each resnet output / conv_in output / upsampler output for a stream; conv1's output for a
hidden group). Channels that carry little signal through the network are the first to go.
RMS norms renormalise over the kept channels (their scale sqrt(C) follows C), so the pruned decoder
is close to, not equal to, the teacher: distillation (`fastlight distill-decoder`) closes the gap.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import patchify, unpatchify
from torch import nn

from fastlight.errors import DataError, InputError, MissingFileError, ModelError
from fastlight.fileio import atomic_write_text, read_json_object
from fastlight.models.weights import load_pretrained

VAE_CLASS = "AutoencoderKLWan"


# ----------------------------------------------------------------------------- loading / checks


def check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 < float(ratio) < 1.0):
        raise InputError(f"--ratio must be a fraction of the decoder's parameters strictly between 0 and 1, "
                         f"got {ratio!r}")
    return float(ratio)


def read_vae_config(path: str | Path) -> dict:
    """The folder's config.json, checked to be an AutoencoderKLWan (else one clear ValueError)."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"VAE folder {p} does not exist")
    cfg_file = p / "config.json" if p.is_dir() else p
    if not cfg_file.is_file():
        raise ModelError(f"{p} is not a diffusers VAE folder (no config.json); pass a folder saved with "
                         f"AutoencoderKLWan.save_pretrained (e.g. Wan2.1-T2V-1.3B-Diffusers/vae)")
    cfg = read_json_object(cfg_file, ModelError, "re-save the VAE with save_pretrained")
    name = cfg.get("_class_name") if isinstance(cfg, dict) else None
    if name != VAE_CLASS:
        raise ModelError(f"{p} holds a {name or 'non-diffusers'} model, not an {VAE_CLASS}; the decoder tools "
                         f"support the Wan VAE (e.g. Wan2.1-T2V-1.3B-Diffusers/vae)")
    if cfg.get("is_residual"):
        raise ModelError(f"{p} is a Wan 2.2 residual VAE (is_residual=true); decoder pruning supports the Wan 2.1 "
                         f"layout only")
    return cfg


def load_vae(path: str | Path, device: str | torch.device = "cpu"):
    """Stock `AutoencoderKLWan.from_pretrained` in float32 (the shipped asset is stored in float16)."""
    from diffusers import AutoencoderKLWan

    read_vae_config(path)
    vae = load_pretrained(AutoencoderKLWan, path, "VAE folder", torch_dtype=torch.float32)
    return vae.to(device).eval()


def check_latents(vae, z: torch.Tensor, what: str = "latents") -> None:
    c = vae.config.z_dim
    if z.dim() != 5:
        raise DataError(f"{what}: expected (B, C, T, H, W) latents, got shape {tuple(z.shape)}")
    if z.shape[1] != c:
        raise DataError(f"{what} have {z.shape[1]} channels but the VAE's z_dim is {c}; use latents made by "
                        f"this VAE's encoder (or a DiT trained on it)")


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- channel groups


def decode_raw(vae, z: torch.Tensor) -> torch.Tensor:
    """`AutoencoderKLWan._decode` without the final clamp (so the pixel loss has gradients everywhere).
    Same causal frame-by-frame loop with the feature cache, then the stock depth-to-space for a patch_size
    (the patch2 head, prune.py); no tiling."""
    vae.clear_cache()
    x = vae.post_quant_conv(z)
    outs = []
    for i in range(z.shape[2]):
        vae._conv_idx = [0]
        outs.append(vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                first_chunk=(i == 0)))
    vae.clear_cache()
    out = torch.cat(outs, 2)
    return unpatchify(out, vae.config.patch_size) if vae.config.patch_size else out


def _is_conv(m) -> bool:
    return isinstance(m, (nn.Conv2d, nn.Conv3d))


def decoder_groups(decoder) -> tuple[dict, dict, dict]:
    """Walk a WanDecoder3d (Wan 2.1 layout) in forward order.

    Returns (widths, param_map, sites): widths {group: channels}; param_map {param name (relative to
    the decoder): (out_spec, in_spec)} where a spec is None (keep all), a group name, or
    ("repeat", group, n) for n stacked copies of a group (qkv, time_conv); sites {module name: group}
    whose forward output carries that group (for scoring and feature matching).
    """
    widths: dict[str, int] = {}
    pmap: dict[str, tuple] = {}
    sites: dict[str, str] = {}

    def new(name, width):
        widths[name] = int(width)
        return name

    def conv(prefix, mod, out, inp):
        pmap[f"{prefix}.weight"] = (out, inp)
        if getattr(mod, "bias", None) is not None:
            pmap[f"{prefix}.bias"] = (out, None)

    def norm(prefix, g):
        pmap[f"{prefix}.gamma"] = (g, None)
        # WanRMS_norm has an optional bias (False in the VAE)
        pmap[f"{prefix}.bias"] = (g, None)

    def resnet(prefix, rn, cur):
        out = cur if rn.in_dim == rn.out_dim else new(f"{prefix}.out", rn.out_dim)
        hid = new(f"{prefix}.hidden", rn.out_dim)
        norm(f"{prefix}.norm1", cur)
        conv(f"{prefix}.conv1", rn.conv1, hid, cur)
        norm(f"{prefix}.norm2", hid)
        conv(f"{prefix}.conv2", rn.conv2, out, hid)
        if _is_conv(rn.conv_shortcut):
            conv(f"{prefix}.conv_shortcut", rn.conv_shortcut, out, cur)
        sites[f"{prefix}.conv1"] = hid
        sites[prefix] = out
        return out

    cur = new("conv_in", decoder.conv_in.out_channels)
    conv("conv_in", decoder.conv_in, cur, None)
    sites["conv_in"] = cur
    mid = decoder.mid_block
    cur = resnet("mid_block.resnets.0", mid.resnets[0], cur)
    for i, (attn, rn) in enumerate(zip(mid.attentions, mid.resnets[1:])):
        a = f"mid_block.attentions.{i}"
        norm(f"{a}.norm", cur)
        conv(f"{a}.to_qkv", attn.to_qkv, ("repeat", cur, 3), cur)
        conv(f"{a}.proj", attn.proj, cur, cur)
        sites[a] = cur
        cur = resnet(f"mid_block.resnets.{i + 1}", rn, cur)
    for b, blk in enumerate(decoder.up_blocks):
        if not hasattr(blk, "upsamplers"):
            raise ModelError("decoder pruning supports the Wan 2.1 decoder layout only (is_residual=false)")
        if blk.in_dim != widths[cur]:
            raise ValueError(f"up block {b}: input width {blk.in_dim} != stream width {widths[cur]}")
        for r, rn in enumerate(blk.resnets):
            cur = resnet(f"up_blocks.{b}.resnets.{r}", rn, cur)
        if blk.upsamplers is not None:
            up = blk.upsamplers[0]
            u = f"up_blocks.{b}.upsamplers.0"
            if hasattr(up, "time_conv"):
                conv(f"{u}.time_conv", up.time_conv, ("repeat", cur, 2), cur)
            c2 = up.resample[1]
            nxt = new(f"{u}.out", c2.out_channels)
            conv(f"{u}.resample.1", c2, nxt, cur)
            sites[u] = nxt
            cur = nxt
    norm("norm_out", cur)
    conv("conv_out", decoder.conv_out, None, cur)
    return widths, pmap, sites


# ----------------------------------------------------------------------------- plan and scores


HEADS = ("full", "patch2")
ENCODER_KEYS = ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "attn_scales", "temperal_downsample",
                "in_channels", "patch_size", "is_residual", "dropout")


def stock_config(cfg: dict) -> dict:
    """The config's __init__ arguments (no `_class_name` / `_diffusers_version` ...)."""
    return {k: v for k, v in dict(cfg).items() if not k.startswith("_")}


def light_config(cfg: dict, decoder_base_dim: int, res_blocks: int | None = None, head: str = "full") -> dict:
    """The light VAE's stock AutoencoderKLWan config (see the module docstring): the teacher's `cfg` with
    `decoder_base_dim`, `num_res_blocks=res_blocks` (None: the teacher's) and, for head="patch2", the last
    up stage replaced by 2x2 depth-to-space. A config that changes the encoder gets base_dim=decoder_base_dim
    (the placeholder encoder is kept small)."""
    cfg = stock_config(cfg)
    d = cfg.get("decoder_base_dim") or cfg["base_dim"]
    if isinstance(decoder_base_dim, bool) or not isinstance(decoder_base_dim, int) or not 0 < decoder_base_dim <= d:
        raise InputError(f"decoder_base_dim must be an integer in [1, {d}], got {decoder_base_dim!r}")
    nrb = cfg["num_res_blocks"]
    if res_blocks is not None and (isinstance(res_blocks, bool) or not isinstance(res_blocks, int)
                                   or not 0 <= res_blocks <= nrb):
        raise InputError(f"res_blocks must be a whole number in [0, {nrb}] (the teacher's num_res_blocks), "
                         f"got {res_blocks!r}")
    if head not in HEADS:
        raise InputError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    out = dict(cfg, decoder_base_dim=decoder_base_dim)
    if res_blocks is not None:
        out["num_res_blocks"] = res_blocks
    if head == "patch2":
        mult, tdown = list(cfg["dim_mult"]), list(cfg["temperal_downsample"])
        if cfg.get("patch_size") or len(mult) < 2 or tdown[0]:
            raise ModelError("head patch2 needs a decoder whose last upsampling is spatial only (temperal_downsample"
                             f"[0] false), at least 2 stages and no patch_size; this VAE has dim_mult={mult}, "
                             f"temperal_downsample={tdown}, patch_size={cfg.get('patch_size')}; use head: full")
        out.update(dim_mult=mult[1:], temperal_downsample=tdown[1:], patch_size=2,
                   in_channels=4 * cfg.get("in_channels", 3), out_channels=4 * cfg.get("out_channels", 3))
    if not encoder_kept(cfg, out):
        out["base_dim"] = decoder_base_dim
    return out


def encoder_kept(teacher_cfg: dict, light_cfg: dict) -> bool:
    """Whether the light config builds the teacher's encoder (so its weights carry over)."""
    return all(teacher_cfg.get(k) == light_cfg.get(k) for k in ENCODER_KEYS)


def _meta_decoder(cfg: dict):
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanDecoder3d

    with torch.device("meta"):
        return WanDecoder3d(dim=cfg.get("decoder_base_dim") or cfg["base_dim"], z_dim=cfg["z_dim"],
                            dim_mult=cfg["dim_mult"], num_res_blocks=cfg["num_res_blocks"],
                            attn_scales=cfg.get("attn_scales", []),
                            temperal_upsample=list(cfg["temperal_downsample"])[::-1],
                            out_channels=cfg.get("out_channels", 3))


def _decoder_params(cfg: dict, decoder_base_dim: int, res_blocks: int | None = None, head: str = "full") -> int:
    return count(_meta_decoder(light_config(cfg, decoder_base_dim, res_blocks, head)))


def plan_decoder(vae, ratio: float, res_blocks: int | None = None, head: str = "full") -> dict:
    """The largest decoder_base_dim that, with the given layout (res_blocks, head), removes at least `ratio`
    of the decoder's parameters."""
    ratio = check_ratio(ratio)
    cfg = stock_config(vae.config)
    d = cfg.get("decoder_base_dim") or cfg["base_dim"]
    full = count(vae.decoder)
    best = None
    for dd in range(d, 0, -1):
        n = _decoder_params(cfg, dd, res_blocks, head)
        if 1 - n / full >= ratio:
            best = (dd, n)
            break
    if best is None:
        raise InputError(f"ratio {ratio} can not be reached: even decoder_base_dim=1 keeps "
                         f"{_decoder_params(cfg, 1, res_blocks, head)} of {full} decoder parameters")
    dd, n = best
    return {"decoder_base_dim_before": d, "decoder_base_dim": dd, "decoder_params_before": full,
            "decoder_params_after": n, "target_ratio": ratio, "achieved_ratio": round(1 - n / full, 4),
            "width_keep": round(dd / d, 4), "num_res_blocks": cfg["num_res_blocks"] if res_blocks is None else res_blocks,
            "head": head}


@torch.no_grad()
def channel_scores(vae, latents: torch.Tensor, batch: int = 4) -> dict[str, torch.Tensor]:
    """Per group, per channel: L2 norm of its activation on `latents` (raw, un-normalised VAE latents),
    summed over the group's sites (see the module docstring)."""
    check_latents(vae, latents, "calibration latents")
    widths, _, sites = decoder_groups(vae.decoder)
    sq = {name: torch.zeros(widths[g], dtype=torch.float64) for name, g in sites.items()}
    cnt = {name: 0 for name in sites}
    hooks = []
    mods = dict(vae.decoder.named_modules())

    def hook(name):
        def fn(_m, _inp, out):
            a = out.detach().double()
            sq[name] += a.pow(2).transpose(0, 1).reshape(a.shape[1], -1).sum(1)
            cnt[name] += a.numel() // a.shape[1]
        return fn

    for name in sites:
        hooks.append(mods[name].register_forward_hook(hook(name)))
    try:
        for i in range(0, latents.shape[0], batch):
            vae.decode(latents[i:i + batch])
    finally:
        for h in hooks:
            h.remove()
    scores = {g: torch.zeros(w, dtype=torch.float64) for g, w in widths.items()}
    for name, g in sites.items():
        scores[g] += (sq[name] / max(cnt[name], 1)).sqrt()
    return {g: s.float() for g, s in scores.items()}


# ----------------------------------------------------------------------------- surgery


def _index(spec, keep: dict[str, torch.Tensor], widths: dict[str, int]):
    if spec is None:
        return None
    if isinstance(spec, tuple):
        _, g, n = spec
        return torch.cat([keep[g] + k * widths[g] for k in range(n)])
    return keep[spec]


def prune_decoder(vae, decoder_base_dim: int, scores: dict[str, torch.Tensor] | None = None,
                  keep: dict[str, torch.Tensor] | None = None, res_blocks: int | None = None, head: str = "full"):
    """A new AutoencoderKLWan with `light_config(vae.config, decoder_base_dim, res_blocks, head)`: each decoder
    group's top-scoring channels (in their original order) of every decoder tensor the light layout shares
    with the teacher (same name, same channel groups), fresh layers for the rest (`info["fresh"]`), and the
    teacher's encoder and quant convs when the config keeps the encoder. Without scores: the first channels
    (a plain truncation, for tests / ablation). `keep` ({group: indices}, any order) overrides the selection
    (tests use a permutation at full width: the output must not change). Returns (model, info)."""
    from diffusers import AutoencoderKLWan

    tcfg = stock_config(vae.config)
    cfg = light_config(tcfg, decoder_base_dim, res_blocks, head)
    same_layout = res_blocks in (None, tcfg["num_res_blocks"]) and head == "full"
    widths, pmap, _ = decoder_groups(vae.decoder)
    new = AutoencoderKLWan(**cfg)
    # each group's width in the light config, from its own structure (not w * d' / d: an upsampler halves
    # its stream's width, so a group can be narrower than decoder_base_dim)
    new_widths, new_pmap, _ = decoder_groups(new.decoder)
    if same_layout and set(new_widths) != set(widths):
        raise ModelError(f"decoder_base_dim {decoder_base_dim} changes the decoder's layout (its channel groups); "
                         "pick another ratio")
    given = keep
    keep = _select(widths, new_widths, scores, given)
    kept_encoder = encoder_kept(tcfg, cfg)
    old_sd, sd, fresh = vae.state_dict(), {}, []
    new_modules = {k.rsplit(".", 1)[0] for k, spec in new_pmap.items() if pmap.get(k) != spec}
    for name, p in new.state_dict().items():
        rel = name[len("decoder."):] if name.startswith("decoder.") else None
        if rel is not None:
            if rel not in new_pmap:
                raise RuntimeError(f"decoder parameter {rel} is not covered by the channel map")
            if rel.rsplit(".", 1)[0] in new_modules:  # not in the teacher, or on other channel groups (a new head)
                if same_layout:
                    raise RuntimeError(f"decoder parameter {rel} has no counterpart in the teacher")
                fresh.append(name)
                sd[name] = torch.zeros_like(p) if rel.startswith("conv_out.") else p.clone()
                continue
            o, i = pmap[rel]
            src = old_sd[name]
            io, ii = _index(o, keep, widths), _index(i, keep, widths)
            if io is not None:
                src = src.index_select(0, io)
            if ii is not None:
                src = src.index_select(1, ii)
        elif name.startswith(("encoder.", "quant_conv.")) and not kept_encoder:
            sd[name] = p.clone()  # the untrained placeholder encoder (see the module docstring)
            continue
        else:
            src = old_sd[name]
        if src.shape != p.shape:
            raise RuntimeError(f"surgery produced {tuple(src.shape)} for {name}, the config expects {tuple(p.shape)}")
        sd[name] = src.clone()
    new.load_state_dict(sd, strict=True)
    n_dec = count(new.decoder)
    expected = count(_meta_decoder(cfg))
    assert n_dec == expected, (n_dec, expected)
    if kept_encoder:
        assert count(new) == count(vae) - count(vae.decoder) + n_dec
    info = {"decoder_base_dim": decoder_base_dim, "decoder_params": n_dec,
            "decoder_params_before": count(vae.decoder), "params": count(new), "params_before": count(vae),
            "config_change": {k: {"from": tcfg.get(k), "to": v} for k, v in cfg.items() if tcfg.get(k) != v},
            "encoder": "teacher" if kept_encoder else "placeholder",
            "fresh": fresh, "kept_channels": {g: keep[g].tolist() for g in new_widths},
            "criterion": ("given" if given is not None else "L2 norm of activations on calibration latents"
                          if scores is not None else "first channels")}
    return new.eval(), info


def _select(widths: dict[str, int], new_widths: dict[str, int], scores, given) -> dict[str, torch.Tensor]:
    """{group: kept teacher channel indices} for every group of the light decoder."""
    keep = {}
    for g, k in new_widths.items():
        if g not in widths:
            raise ModelError(f"light decoder group {g} has no counterpart in the teacher; the layout change is not "
                             "one prune_decoder can map")
        w = widths[g]
        if not 0 < k <= w:
            raise ModelError(f"group {g}: width {w} -> {k} in the light config; pick another ratio")
        if given is not None:
            keep[g] = torch.as_tensor(given[g], dtype=torch.long)
            if keep[g].numel() != k or keep[g].unique().numel() != k or not (0 <= int(keep[g].min()) and int(keep[g].max()) < w):
                raise InputError(f"keep[{g!r}] must hold {k} distinct channel indices in [0, {w})")
        elif scores is None:
            keep[g] = torch.arange(k)
        else:
            s = scores[g]
            if s.numel() != w:
                raise InputError(f"scores for {g} have {s.numel()} entries, expected {w}")
            keep[g] = torch.topk(s, k).indices.sort().values
    return keep


@torch.no_grad()
def fit_head(light, teacher, latents: torch.Tensor, rows_per_latent: int = 20_000, ridge: float = 1e-3,
             seed: int = 0) -> dict:
    """Set a fresh conv_out of `light` (e.g. the patch2 head) to the least-squares fit of the teacher's video:
    a causal 3x3x3 conv from what reaches conv_out (its input over the whole clip, front-padded with zeros in
    time as the cached chunks see it) to the teacher's clamped output, patchified like the light config.
    Ridge-regularised normal equations over up to `rows_per_latent` random positions per latent. Returns
    {"psnr_vs_teacher_db": on `latents`, "rows": positions used}: distillation then starts from the best
    linear head on the pruned features instead of from zero."""
    conv = light.decoder.conv_out
    kt, kh, kw = conv.kernel_size
    seen: list[torch.Tensor] = []
    hook = conv.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    g = torch.Generator().manual_seed(seed)
    ata = aty = None
    rows = 0
    try:
        for i in range(latents.shape[0]):
            seen.clear()
            z = latents[i:i + 1]
            decode_raw(light, z)
            x = torch.cat(seen, 2).double()  # (1, C, T, h, w): conv_out's input over the clip
            x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0))
            y = decode_raw(teacher, z).clamp(-1, 1)
            p = light.config.patch_size
            y = (patchify(y, p) if p else y).double()[0]  # (out, T, h, w)
            t, h, w = y.shape[1:]
            n = min(rows_per_latent, t * h * w)
            idx = torch.randperm(t * h * w, generator=g)[:n]
            ti, hi, wi = idx // (h * w), (idx // w) % h, idx % w
            cols = [x[0, :, ti + a, hi + b, wi + c] for a in range(kt) for b in range(kh) for c in range(kw)]
            a_mat = torch.stack(cols, 1).reshape(x.shape[1] * kt * kh * kw, n)  # (C * k, n), C-major like the weight
            a_mat = torch.cat([a_mat, torch.ones(1, n, dtype=a_mat.dtype)]).T
            y_mat = y[:, ti, hi, wi].T
            ata = a_mat.T @ a_mat if ata is None else ata + a_mat.T @ a_mat
            aty = a_mat.T @ y_mat if aty is None else aty + a_mat.T @ y_mat
            rows += n
    finally:
        hook.remove()
    reg = ridge * ata.diagonal().mean() * torch.eye(ata.shape[0], dtype=ata.dtype)
    sol = torch.linalg.solve(ata + reg, aty)  # (C * k + 1, out)
    out_ch, in_ch = conv.out_channels, conv.in_channels
    conv.weight.copy_(sol[:-1].T.reshape(out_ch, in_ch, kt, kh, kw).to(conv.weight.dtype))
    conv.bias.copy_(sol[-1].to(conv.bias.dtype))
    mse = torch.stack([((decode_raw(light, latents[i:i + 1]).clamp(-1, 1)
                         - decode_raw(teacher, latents[i:i + 1]).clamp(-1, 1)) ** 2).mean()
                       for i in range(latents.shape[0])]).mean()
    return {"psnr_vs_teacher_db": round(float(10 * torch.log10(4.0 / mse.clamp_min(1e-12))), 2), "rows": rows}


def write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_text(Path(out) / "manifest.json", json.dumps(manifest, indent=1) + "\n")
