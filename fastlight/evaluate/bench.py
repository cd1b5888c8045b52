"""`fastlight bench`: end-to-end latency of several models, measured side by side in one run.

Each model runs with its own sampler (its sampler.json; `bench_spec.py` for explicit overrides),
through the end-to-end pipeline plug-in that handles it (`pipelines.py`, e.g. the Shapes world's).
What one timed run covers (per batch):

    text     prompt -> text embeddings (+ the Cond on the device)   the pipeline's `encode`
    denoise  initial noise + the sampler's network evaluations        `sampling.sample` (generic)
    decode   latents -> frames on the host                            the pipeline's `decode`

Rows report the end-to-end time (all three) and the denoise-only time side by side, with their
speedups against the first model. Timing method: `timing.py` (warm-up, interleaved rounds,
median / min / max, CUDA events, peak memory). Network evaluations (NFE) are counted with a
forward pre-hook (samples seen / batch size, so batched cond + uncond counts 2) and checked
against the sampler's (steps x (2 if guidance != 1)).

A bare transformer folder of a real Wan / HunyuanVideo model has no plug-in pipeline: bench the
whole stock pipeline folders instead (`fastlight bench --pipeline TEACHER --pipeline EXPORT`,
`fastlight/evaluate/pipeline_bench.py`), or time your own code with `timing.bench_callables`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

from fastlight.diffusion import sampling
from fastlight.diffusion.spec import SamplerSpec
from fastlight.errors import InputError, ModelError
from fastlight.evaluate.bench_spec import SPEC_FORMAT, ModelSpec, parse_spec
from fastlight.evaluate.pipelines import pipeline_for, registered_pipelines
from fastlight.evaluate.timing import PHASES, ForwardCounter, bench_callables, phase, resolve_device, unique_names
from fastlight.fileio import atomic_write_json
from fastlight.models.load import load_denoiser, resolve_model_path

__all__ = ["ModelSpec", "bench", "bench_callables", "bench_models", "parse_spec", "phase"]


@dataclass
class _Entry:
    """One model being benched: its spec, sampler, loaded model, pipeline and forward counter."""

    spec: ModelSpec
    sampler: SamplerSpec
    model: Any
    pipeline: Any
    counter: ForwardCounter
    batch_size: int
    nfe_seen: list[int] = field(default_factory=list)
    forwards_seen: list[int] = field(default_factory=list)


def _load(spec: ModelSpec, dev: torch.device, batch_size: int, seed: int, progress: bool) -> _Entry:
    model = load_denoiser(resolve_model_path(spec.path), dev).eval()
    choice = spec.choose()
    pipe_cls = pipeline_for(model)
    if pipe_cls is None:
        raise ModelError(
            f"{spec.path}: no registered pipeline ({', '.join(registered_pipelines()) or 'none'}) runs this model end to "
            "end; for a real Wan/HunyuanVideo model bench its pipeline folders instead: fastlight bench --pipeline "
            "TEACHER_PIPELINE --pipeline EXPORTED_STUDENT")
    bad = [i for i in spec.skip if i >= model.num_blocks]
    if bad:
        raise InputError(f"{spec.name}: skip ids {bad} out of range; this model has blocks 0..{model.num_blocks - 1}")
    if progress:
        print(f"{spec.name}: {choice.line}")
    return _Entry(spec, choice.spec, model, pipe_cls(model, batch_size, seed, dev), ForwardCounter(model), batch_size)


def _timed_run(e: _Entry, dev: torch.device, seed: int) -> Callable[[], None]:
    """The timed closure of one model: text -> denoise -> decode, with NFE counting."""
    B, sampler = e.batch_size, e.sampler
    shape = (B, *e.pipeline.latent_shape(e.model))

    def run() -> None:
        e.counter.reset()
        with phase("text"):
            cond = e.pipeline.encode()
        with phase("denoise"):
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dev)
            gen = torch.Generator(device=dev).manual_seed(seed + 1)
            x = sampling.sample(e.model, noise, cond, sampler, generator=gen, skip=e.spec.skip)
        with phase("decode"):
            e.pipeline.decode(x)
        if e.counter.samples % B:
            raise RuntimeError(f"{e.spec.name}: the denoiser saw {e.counter.samples} samples for a batch of {B}")
        nfe = e.counter.samples // B
        if nfe != sampler.nfe:
            raise RuntimeError(
                f"{e.spec.name}: counted {nfe} network evaluations per video, expected {sampler.nfe} "
                f"({sampler.describe()}); the sampler does not do what the spec says")
        e.nfe_seen.append(nfe)
        e.forwards_seen.append(e.counter.calls)

    return run


def _row(name: str, e: _Entry, r: dict, first: dict, dev: torch.device) -> dict:
    B, s = e.batch_size, e.sampler
    ph = {k: r["phases_s"][k]["median"] / B for k in PHASES}
    first_denoise = first["phases_s"]["denoise"]["median"] / B
    return {
        "model": name,
        "path": e.spec.path,
        "sampler": s.kind,  # sampler / steps / cfg / skip: the keys the report joins on
        "steps": s.num_steps,
        "cfg": s.guidance,
        "sampler_spec": s.to_json(),
        "skip": list(e.spec.skip),
        "timesteps": list(s.timesteps) if s.kind == "few_step" else None,
        "shift": s.shift,
        "batch_size": B,
        "nfe": e.nfe_seen[-1],
        "forwards": e.forwards_seen[-1],
        "dit_params": e.model.num_params(e.spec.skip),
        "time_s": {k: v / B for k, v in r["time_s"].items() if k != "runs"} | {"runs": [v / B for v in r["time_s"]["runs"]]},
        **{f"{k}_s": v for k, v in ph.items()},
        "peak_mem_mb": r["peak_mem_mb"],
        "mem_method": r["mem_method"],
        "speedup": r["speedup"],
        "denoise_speedup": first_denoise / ph["denoise"] if ph["denoise"] > 0 else float("inf"),
        "device": str(dev),
    }


def bench(
    specs: Iterable[str | ModelSpec],
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Bench models end to end, side by side. Returns one row per spec:

    {model, path, sampler, steps, cfg (the guidance), sampler_spec, skip, timesteps, shift, batch_size,
     nfe, forwards, dit_params, time_s {median, min, max, runs} (end to end), text_s, denoise_s,
     decode_s, peak_mem_mb, mem_method, speedup (end to end), denoise_speedup, device}.
    Times are seconds per video (batch time / batch_size; phases: medians). `progress` also prints
    which sampler each model uses.
    """
    specs = [parse_spec(s) for s in specs]
    if not specs:
        raise InputError("nothing to bench: give at least one model spec")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
    dev = resolve_device(device)
    names = unique_names(specs)
    entries: list[_Entry] = []
    try:
        for spec in specs:
            entries.append(_load(spec, dev, batch_size, seed, progress))
        fns = {n: _timed_run(e, dev, seed) for n, e in zip(names, entries)}
        res = bench_callables(fns, repeats=repeats, warmup=warmup, device=dev, progress=progress)
    finally:
        for e in entries:
            e.counter.remove()
    first = res[names[0]]
    return [_row(n, e, res[n], first, dev) for n, e in zip(names, entries)]


def bench_models(
    model_specs: Sequence[str],
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    out_json: str | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Bench the models of `fastlight bench --model SPEC [--model SPEC ...]` side by side; write the
    rows with the run's settings (torch, device, GPU, seeds) to `out_json` (atomically) if given.
    Returns the rows (`bench`)."""
    if not model_specs:
        raise InputError(f"give at least one --model {SPEC_FORMAT}")
    specs = [parse_spec(s) for s in model_specs]  # fail on a bad spec before loading anything
    rows = bench(specs, batch_size=batch_size, repeats=repeats, warmup=warmup, device=device, seed=seed,
                 progress=progress)
    if out_json:
        meta = {"torch": torch.__version__, "device": rows[0]["device"], "batch_size": batch_size, "repeats": repeats,
                "warmup": warmup, "seed": seed, "mem_method": rows[0]["mem_method"],
                "specs": [s.label or s.path for s in specs]}
        if rows[0]["device"].startswith("cuda"):
            meta["gpu"] = torch.cuda.get_device_name(torch.device(rows[0]["device"]))
        atomic_write_json(out_json, {**meta, "rows": rows})
    return rows
