"""Our Euler CFG sampler vs the stock diffusers WanPipeline, side by side in one run.

    python benchmarks/sampler_vs_diffusers.py                       # CPU, float32, 20 steps, guidance 5
    python benchmarks/sampler_vs_diffusers.py --device cuda --dtype bfloat16 --compile --out bench.json

Both sides drive the SAME randomly initialised tiny `WanTransformer3DModel` with the same
noise, text embeddings (encoded once, outside the timed region), steps, shift and guidance:

- ours:      `fastlight.diffusion.sampling.euler_sample` over `WanDenoiser` (cond and uncond
             batched into one forward, torch.inference_mode, state in float32);
- diffusers: `WanPipeline(transformer=..., scheduler=FlowMatchEulerDiscreteScheduler(shift))`
             with prompt_embeds / negative_prompt_embeds / latents / output_type="latent"
             (two forwards per step, no VAE, no text encoder).

Runs are interleaved (ours, diffusers, ours, diffusers, ...) after `--warmup` untimed rounds.
Reported: median / min / max seconds per video of each, the ratio ours / diffusers of the
medians (target <= 1.0), and the max |difference| of the two final latents (they are the same
ODE; ~1e-5 apart in float32).

Options: `--compile` compiles every transformer block in place (`nn.Module.compile`, shared by
both sides) and also times an eager copy of our sampler ("ours_eager"), reporting the speedup,
the first (compiling) call's time and max |compiled - eager|; `--dtype bfloat16` (CUDA only) casts the transformer; `--sdpa` picks the
scaled-dot-product-attention backend (CUDA: flash / efficient / cudnn / math). Timing: CUDA is
synchronised before and after each run; wall time by `time.perf_counter`.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

from fastlight.diffusion.sampling import euler_sample, shifted_grid
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import Cond
from fastlight.models.wan import WanDenoiser

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", "--cfg", dest="guidance", type=float, default=5.0,
                    help="guidance scale w (v_u + w (v_c - v_u)); 1 = none")
    ap.add_argument("--shift", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--dim", type=int, default=None, help="model width; overrides --head-dim (= dim / heads)")
    ap.add_argument("--ffn-dim", type=int, default=None, help="default 2 x width")
    ap.add_argument("--text-dim", type=int, default=64)
    ap.add_argument("--text-len", type=int, default=16)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--height", type=int, default=24)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    ap.add_argument("--compile", action="store_true", help="torch.compile each transformer block (both sides)")
    ap.add_argument("--sdpa", choices=["default", "flash", "efficient", "cudnn", "math"], default="default",
                    help="restrict the SDPA backend (torch.nn.attention.sdpa_kernel)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the result as JSON (atomically)")
    a = ap.parse_args(argv)
    if a.dim is not None:
        if a.dim % a.heads:
            ap.error(f"--dim {a.dim} must be a multiple of --heads {a.heads}")
        a.head_dim = a.dim // a.heads
    a.dim = a.heads * a.head_dim
    if a.ffn_dim is None:
        a.ffn_dim = 2 * a.dim
    if a.steps < 1 or a.repeats < 1 or a.warmup < 0:
        ap.error("need --steps >= 1, --repeats >= 1, --warmup >= 0")
    if a.dtype == "bfloat16" and not str(a.device).startswith("cuda"):
        ap.error("--dtype bfloat16 is only supported on CUDA")
    if a.height % 2 or a.width % 2:
        ap.error("--height / --width must be even (patch size 1 x 2 x 2)")
    return a


def wan_config(a: argparse.Namespace) -> dict:
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=a.heads,
        attention_head_dim=a.head_dim,
        in_channels=a.channels,
        out_channels=a.channels,
        text_dim=a.text_dim,
        freq_dim=64,
        ffn_dim=a.ffn_dim,
        num_layers=a.layers,
        rope_max_seq_len=256,
    )


def _cast_like_from_pretrained(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the transformer's floating parameters / buffers to dtype, except the modules diffusers
    keeps in float32 when loading with `from_pretrained(torch_dtype=...)` (`_keep_in_fp32_modules`)."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or [])
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not keep.intersection(name.split(".")):
            t.data = t.data.to(dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sdpa_context(name: str):
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
               "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name]
    return sdpa_kernel(backend)


def _stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


def main(argv=None) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    a = parse_args(argv)
    device, dtype = torch.device(a.device), DTYPES[a.dtype]

    # ---- one model, shared by both sides ------------------------------------------------------
    torch.manual_seed(a.seed)
    null_text = 0.5 * torch.randn(1, a.text_len, a.text_dim)  # non-zero: cond and uncond really differ
    den = WanDenoiser.from_config(null_text=null_text, **wan_config(a)).eval().requires_grad_(False)
    den = den.to(device)
    if dtype != torch.float32:
        _cast_like_from_pretrained(den.model, dtype)
    eager = None
    if a.compile:  # keep an eager twin (same weights) to measure what compiling buys
        import copy

        eager = copy.deepcopy(den)
        for block in den.model.blocks:
            block.compile()
    n_params = sum(p.numel() for p in den.model.parameters())

    # ---- inputs: noise and text embeddings made once (the "cached text encoder") --------------
    g = torch.Generator().manual_seed(a.seed + 1)
    shape = (a.batch_size, a.channels, a.frames, a.height, a.width)
    noise = torch.randn(shape, generator=g).to(device=device, dtype=dtype)  # (B, C, F, H, W)
    text = torch.randn(a.batch_size, a.text_len, a.text_dim, generator=g).to(device=device, dtype=dtype)  # (B, L, D)
    cond = Cond(text)
    neg_text = den.null_cond(cond).text  # (B, L, D), the same null text our sampler uses
    grid = shifted_grid(a.steps, a.shift)  # (N + 1,) on the host, as euler_sample wants it

    pipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=None, transformer=den.model,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=a.shift),
    )
    pipe.set_progress_bar_config(disable=True)
    noise_f32 = noise.float()  # the pipeline keeps its latents in float32 (same values as ours)

    def run_ours() -> torch.Tensor:
        return euler_sample(den, noise, cond, grid, guidance=a.guidance)

    def run_diffusers() -> torch.Tensor:
        return pipe(
            prompt_embeds=text, negative_prompt_embeds=neg_text, latents=noise_f32.clone(),
            num_inference_steps=a.steps, guidance_scale=a.guidance, output_type="latent",
        ).frames

    runners = {"ours": run_ours, "diffusers": run_diffusers}
    if eager is not None:
        runners["ours_eager"] = lambda: euler_sample(eager, noise, cond, grid, guidance=a.guidance)
    first = {}
    times = {k: [] for k in runners}
    last = {}
    with _sdpa_context(a.sdpa):
        for rnd in range(a.warmup + a.repeats):
            for name, fn in runners.items():  # interleaved: ours, diffusers, ours, diffusers, ...
                _sync(device)
                t0 = time.perf_counter()
                out = fn()
                _sync(device)
                dt = time.perf_counter() - t0
                first.setdefault(name, dt / a.batch_size)
                if rnd >= a.warmup:
                    times[name].append(dt / a.batch_size)
                last[name] = out
    max_abs_diff = (last["ours"].float() - last["diffusers"].float()).abs().max().item()
    moved = (last["ours"].float() - noise_f32).abs().mean().item()

    res = {
        "ours": _stats(times["ours"]),
        "diffusers": _stats(times["diffusers"]),
        "ratio": statistics.median(times["ours"]) / statistics.median(times["diffusers"]),
        "max_abs_diff": max_abs_diff,
        "mean_abs_change_from_noise": moved,
        "nfe_per_video": a.steps * (2 if a.guidance != 1 else 1),
        "settings": {
            "steps": a.steps, "guidance": a.guidance, "shift": a.shift, "repeats": a.repeats, "warmup": a.warmup,
            "batch_size": a.batch_size, "latent_shape": list(shape), "text_len": a.text_len,
            "device": str(device), "dtype": a.dtype, "compile": a.compile, "sdpa": a.sdpa,
            "wan_config": {k: list(v) if isinstance(v, tuple) else v for k, v in wan_config(a).items()},
            "params": n_params,
        },
        "env": {
            "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }
    if eager is not None:  # the measured effect of --compile on our sampler
        res["ours_eager"] = _stats(times["ours_eager"])
        res["compile_speedup"] = statistics.median(times["ours_eager"]) / statistics.median(times["ours"])
        res["compile_first_call_s"] = first["ours"]
        res["compile_max_abs_diff"] = (last["ours"].float() - last["ours_eager"].float()).abs().max().item()
    _print_table(res)
    if a.out:
        atomic_write_json(Path(a.out), res)
    return res


def _print_table(res: dict) -> None:
    s = res["settings"]
    print(f"# {s['device']} {s['dtype']} compile={s['compile']} sdpa={s['sdpa']} | steps {s['steps']} guidance {s['guidance']} "
          f"shift {s['shift']} | latents {tuple(s['latent_shape'])} | {s['params'] / 1e6:.2f}M params | "
          f"{s['repeats']} repeats, {s['warmup']} warmup")
    print("| sampler | median s/video | min | max |")
    print("|---|---|---|---|")
    for name in ("ours", "diffusers"):
        r = res[name]
        print(f"| {name} | {r['median_s']:.4f} | {r['min_s']:.4f} | {r['max_s']:.4f} |")
    print(f"ratio ours/diffusers (median): {res['ratio']:.3f}  (target <= 1.0)")
    print(f"final latents max |ours - diffusers|: {res['max_abs_diff']:.2e}")
    if "compile_speedup" in res:
        print(f"--compile: ours eager {res['ours_eager']['median_s']:.4f} s -> compiled {res['ours']['median_s']:.4f} s "
              f"(speedup {res['compile_speedup']:.2f}x; first compiled call {res['compile_first_call_s']:.1f} s; "
              f"max |compiled - eager| {res['compile_max_abs_diff']:.1e})")


if __name__ == "__main__":
    main(sys.argv[1:])
