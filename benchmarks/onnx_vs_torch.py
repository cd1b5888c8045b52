"""The ONNX transformer in onnxruntime vs the torch one, side by side in one run (CPU).

    python benchmarks/onnx_vs_torch.py                                  # runs/distill_try/model (or the teacher)
    python benchmarks/onnx_vs_torch.py --model runs/x/model --onnx runs/x_onnx --out onnx_vs_torch.json

Both sides sample the same Shapes clip (same prompt, first frame, noise and re-noising stream)
with the model's own sampler (its sampler.json; `--steps` / `--guidance` override it explicitly):

- torch: `load_denoiser(MODEL)` (the diffusers WanTransformer3DModel in fastlight's adapter);
- onnx:  `OnnxDenoiser` over `--onnx DIR/transformer.onnx` (exported into a temporary folder with
         `fastlight export --format onnx` when `--onnx` is not given), onnxruntime CPU provider.

Runs are interleaved (torch, onnx, torch, ...) after `--warmup` untimed rounds, both with the same
number of intra-op threads. Reported: median / min / max seconds per video and per network
evaluation, the ratio onnx / torch, the max |onnx - torch| of one forward (batch 1 and 3, T2V and
TI2V) and of the final videos.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_MODEL = "runs/distill_try/model"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL if Path(DEFAULT_MODEL).is_dir() else "shapes-teacher")
    ap.add_argument("--onnx", default=None, help="folder from `fastlight export --format onnx` (default: export now)")
    ap.add_argument("--prompt", default="a red circle moving left quickly")
    ap.add_argument("--steps", type=int, default=None, help="override the model's own sampler's steps")
    ap.add_argument("--guidance", "--cfg", dest="guidance", type=float, default=None,
                    help="override the model's own sampler's guidance")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the result as JSON (atomically)")
    a = ap.parse_args(argv)
    if a.repeats < 1 or a.warmup < 0 or (a.steps is not None and a.steps < 1):
        ap.error("need --repeats >= 1, --warmup >= 0, --steps >= 1")
    return a


def _stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


class Counting(torch.nn.Module):
    """Times every network evaluation of a denoiser (the samplers see it as the denoiser)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.times = inner, []
        self.meta, self.null_text = inner.meta, inner.null_text

    def forward(self, x_t, s, cond, skip=()):
        t0 = time.perf_counter()
        v = self.inner(x_t, s, cond, skip=skip)
        self.times.append(time.perf_counter() - t0)
        return v

    def null_cond(self, cond):
        return self.inner.null_cond(cond)


def forward_diff(den, ox) -> float:
    """Max |onnx - torch| of v on random inputs: batch 1 and 3, T2V and TI2V."""
    from fastlight.shapes import text
    from fastlight.models.denoiser import Cond

    shape = tuple(ox.info["inputs"]["x"][1:])
    worst = 0.0
    for b, ti2v in ((1, False), (3, False), (1, True), (3, True)):
        g = torch.Generator().manual_seed(b + 10 * ti2v)
        x, s = torch.randn(b, *shape, generator=g), torch.rand(b, generator=g)
        image = torch.rand(b, shape[0], 1, *shape[2:], generator=g) * 2 - 1 if ti2v else None
        cond = Cond(text.encode(["a red circle moving left quickly"] * b), image)
        with torch.inference_mode():
            worst = max(worst, (ox(x, s, cond) - den(x, s, cond)).abs().max().item())
    return worst


def main(argv=None) -> dict:
    from fastlight.diffusion.spec import choose_sampler
    from fastlight.models.load import resolve_model_path
    from fastlight.sample import load_model
    from fastlight.shapes.generate import generate, shapes_spec, world_of

    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir, export_s = a.onnx, None
        if onnx_dir is None:
            from fastlight.export.to_onnx import export_onnx

            t0 = time.perf_counter()
            onnx_dir = export_onnx(a.model, str(Path(tmp) / "onnx"))[0]
            export_s = time.perf_counter() - t0
        den = load_model(a.model, "torch")
        ox = load_model(str(onnx_dir), "onnx")  # its session uses `threads` intra-op threads
        choice = choose_sampler(resolve_model_path(a.model), num_steps=a.steps, guidance=a.guidance)
        print(choice.line)
        world = world_of(den)
        spec = shapes_spec(a.prompt, world, a.seed)
        image = spec.image[None]

        def run(model):
            return generate(model, [a.prompt], image, choice.spec, a.seed)

        sides = {"torch": Counting(den), "onnx": Counting(ox)}
        times, forwards, last = {k: [] for k in sides}, {k: [] for k in sides}, {}
        for rnd in range(a.warmup + a.repeats):
            for name, model in sides.items():  # interleaved: torch, onnx, torch, onnx, ...
                model.times.clear()
                t0 = time.perf_counter()
                last[name] = run(model)
                dt = time.perf_counter() - t0
                if rnd >= a.warmup:
                    times[name].append(dt)
                    forwards[name] += model.times
        import onnxruntime

        res = {
            "torch": {**_stats(times["torch"]), "forward": _stats(forwards["torch"])},
            "onnx": {**_stats(times["onnx"]), "forward": _stats(forwards["onnx"])},
            "ratio": statistics.median(times["onnx"]) / statistics.median(times["torch"]),
            "max_abs_diff_forward": forward_diff(den, ox),
            "max_abs_diff_video": (last["onnx"] - last["torch"]).abs().max().item(),
            "settings": {"model": str(a.model), "onnx": str(a.onnx or "exported to a temporary folder"),
                         "sampler": choice.spec.to_json(),
                         "nfe_per_video": len(sides["torch"].times), "prompt": a.prompt, "repeats": a.repeats,
                         "warmup": a.warmup, "threads": threads, "export_s": export_s,
                         "opset": ox.info.get("opset")},
            "env": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "device": "cpu",
                    "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
        }
    for name in ("torch", "onnx"):
        del res[name]["forward"]["times_s"]
    _print_table(res)
    if a.out:
        from fastlight.fileio import atomic_write_json

        atomic_write_json(Path(a.out), res)
    return res


def _print_table(res: dict) -> None:
    s = res["settings"]
    print(f"# {s['model']} | {s['sampler']['sampler']} sampler, {s['nfe_per_video']} NFE | cpu, {s['threads']} threads | "
          f"{s['repeats']} repeats, {s['warmup']} warmup | opset {s['opset']} | load avg {res['env']['load_avg_1min']:.1f}")
    print("| backend | median s/video | min | max | median ms/forward |")
    print("|---|---|---|---|---|")
    for name in ("torch", "onnx"):
        r = res[name]
        print(f"| {name} | {r['median_s']:.4f} | {r['min_s']:.4f} | {r['max_s']:.4f} | {1e3 * r['forward']['median_s']:.2f} |")
    print(f"ratio onnx/torch (median): {res['ratio']:.3f}")
    print(f"max |onnx - torch|: one forward {res['max_abs_diff_forward']:.1e}, final video {res['max_abs_diff_video']:.1e}")


if __name__ == "__main__":
    main(sys.argv[1:])
