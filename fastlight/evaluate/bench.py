"""`fastlight bench`: end-to-end latency of several models, measured side by side in one run.

Each model runs with its own sampler, steps and CFG. What one timed run covers (per batch):

    text     prompt -> text embeddings (+ the Cond on the device)   Shapes: the tiny parser
    denoise  initial noise + the sampler's network evaluations        euler_sample / few_step_sample
    decode   latents -> uint8 frames on the host                      Shapes: pixels -> uint8 (identity "VAE")

Method (see benchmarks/README.md):
- all models are loaded first; then `warmup` untimed rounds, then `repeats` timed rounds,
  interleaved A B C A B C ... so that drift (thermal, other load) hits every model alike;
- per model: median / min / max of the timed rounds, per video (batch time / batch size);
- CUDA: the device is synchronised before a run and times come from CUDA events recorded on
  the current stream (phase boundaries too), read after a final synchronisation;
  CPU: `time.perf_counter`;
- network evaluations (NFE) are counted with a forward pre-hook on the denoiser (samples seen
  / batch size, so batched cond+uncond counts 2) and checked against steps x (2 if cfg != 1);
- peak memory, per model = the highest value over its timed runs, in MiB (2^20 bytes):
  CUDA `max_memory_allocated` (reset before each run); on Linux CPU the process's peak RSS
  (VmHWM), reset before each run through /proc/self/clear_refs, so it is the high-water mark
  of the whole process (all loaded models, Python, torch) *during that model's run*; without
  that, psutil RSS sampled every few ms by a thread (may miss short spikes); as a last resort
  `resource.getrusage` ru_maxrss, a lifetime peak that is NOT per model (flagged in `mem_method`).

Custom pipelines (real Wan / HunyuanVideo with your own text encoder and VAE) use
`bench_callables({"name": fn, ...})`; inside fn, `with phase("text"): ...` marks the split.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import re
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

PHASES = ("text", "denoise", "decode")
SAMPLERS = ("euler", "few_step")
SPEC_KEYS = ("steps", "cfg", "sampler", "skip", "timesteps", "shift")
DEFAULT_EULER_STEPS = 50
DEFAULT_EULER_CFG = 4.0
DEFAULT_FEW_STEP_TIMESTEPS = (1000.0, 750.0, 500.0, 250.0)
SPEC_FORMAT = "PATH_OR_PRESET[:steps=N,cfg=W,sampler=euler|few_step,skip=1+2+3,timesteps=1000+750+500+250,shift=S]"


# ---- model specs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """One model to bench: where it is and how it samples.

    sampler "euler": `steps` Euler steps on `shifted_grid(steps, shift)` (shift: the model's own,
    from fastlight.json, unless given). sampler "few_step": the stochastic sampler on
    `timesteps` (len(timesteps) == steps). cfg: w in v_u + w (v_c - v_u); 1 = no guidance.
    """

    path: str
    steps: int = DEFAULT_EULER_STEPS
    cfg: float = DEFAULT_EULER_CFG
    sampler: str = "euler"
    skip: tuple[int, ...] = ()
    timesteps: tuple[float, ...] | None = None
    shift: float | None = None
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.path

    @property
    def expected_nfe(self) -> int:
        """Network evaluations per video: steps x (2 if cfg != 1 else 1)."""
        return self.steps * (1 if self.cfg == 1 else 2)


def _spec_error(text: str, msg: str) -> ValueError:
    return ValueError(f"model spec {text!r}: {msg} (format: {SPEC_FORMAT})")


def _parse_int(text: str, key: str, value: str, lo: int) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise _spec_error(text, f"{key} must be a whole number >= {lo}, got {value!r}") from None
    if n < lo:
        raise _spec_error(text, f"{key} must be >= {lo}, got {n}")
    return n


def _parse_float(text: str, key: str, value: str) -> float:
    try:
        x = float(value.strip())
    except ValueError:
        raise _spec_error(text, f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise _spec_error(text, f"{key} must be finite, got {value!r}")
    return x


def parse_spec(text: str) -> ModelSpec:
    """'runs/student:steps=4,cfg=1,sampler=few_step' -> ModelSpec. One-line ValueError on bad input.

    Defaults: euler, 50 steps, cfg 4. sampler=few_step defaults to cfg 1 and timesteps
    1000+750+500+250 (or, with steps=N, N levels evenly spaced from 1000 down: 1000 (1 - i/N)).
    Giving timesteps alone implies sampler=few_step.
    """
    if isinstance(text, ModelSpec):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty model spec; use {SPEC_FORMAT}")
    text = text.strip()
    path, opts = text, ""
    head, sep, tail = text.rpartition(":")
    looks_like_options = "=" in tail or any(i.strip().lower() in SPEC_KEYS for i in tail.split(","))
    if sep and (looks_like_options or not tail.strip()):  # 'C:\\models' (no key, no '=') stays a path
        path, opts = head.strip(), tail
        if not tail.strip():
            raise _spec_error(text, "nothing after ':'; give options like steps=4,cfg=1 or drop the ':'")
    if not path:
        raise _spec_error(text, "no model path or preset before ':'")

    raw: dict[str, str] = {}
    for item in opts.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise _spec_error(text, f"option {item.strip()!r} is not key=value")
        if key not in SPEC_KEYS:
            raise _spec_error(text, f"unknown key {key!r}; known keys: {', '.join(SPEC_KEYS)}")
        if key in raw:
            raise _spec_error(text, f"{key} given twice")
        if not value.strip():
            raise _spec_error(text, f"{key} has no value")
        raw[key] = value.strip()

    steps = _parse_int(text, "steps", raw["steps"], 1) if "steps" in raw else None
    cfg = _parse_float(text, "cfg", raw["cfg"]) if "cfg" in raw else None
    if cfg is not None and cfg < 0:
        raise _spec_error(text, f"cfg must be >= 0 (1 = no guidance), got {cfg}")
    shift = _parse_float(text, "shift", raw["shift"]) if "shift" in raw else None
    if shift is not None and shift <= 0:
        raise _spec_error(text, f"shift must be > 0, got {shift}")
    skip: tuple[int, ...] = ()
    if "skip" in raw:
        skip = tuple(sorted({_parse_int(text, "skip", s, 0) for s in raw["skip"].split("+")}))
    timesteps = None
    if "timesteps" in raw:
        timesteps = tuple(_parse_float(text, "timesteps", t) for t in raw["timesteps"].split("+"))
        from fastlight.diffusion.sampling import few_step_grid

        try:
            few_step_grid(timesteps)
        except ValueError as e:
            raise _spec_error(text, str(e)) from None

    sampler = raw.get("sampler", "few_step" if timesteps is not None else "euler").lower().replace("-", "_")
    if sampler == "fewstep":
        sampler = "few_step"
    if sampler not in SAMPLERS:
        raise _spec_error(text, f"sampler must be euler or few_step, got {raw['sampler']!r}")

    if sampler == "euler":
        if timesteps is not None:
            raise _spec_error(text, "timesteps only apply to sampler=few_step (euler uses steps and shift)")
        steps = DEFAULT_EULER_STEPS if steps is None else steps
        cfg = DEFAULT_EULER_CFG if cfg is None else cfg
    else:
        if shift is not None:
            raise _spec_error(text, "shift only applies to sampler=euler (few_step uses timesteps)")
        if timesteps is None:
            n = steps if steps is not None else len(DEFAULT_FEW_STEP_TIMESTEPS)
            timesteps = tuple(1000.0 * (1 - i / n) for i in range(n))
        elif steps is not None and steps != len(timesteps):
            raise _spec_error(text, f"steps={steps} but {len(timesteps)} timesteps given")
        steps = len(timesteps)
        cfg = 1.0 if cfg is None else cfg
    return ModelSpec(path, steps, cfg, sampler, skip, timesteps, shift, text)


# ---- clocks, phases, memory -------------------------------------------------------------------
class _Clock:
    """Timestamps on the host (perf_counter) or on a CUDA stream (events)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def begin(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record(torch.cuda.current_stream(self.device))
            return ev
        return time.perf_counter()

    def end(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def seconds(self, a, b) -> float:
        return a.elapsed_time(b) / 1000.0 if self.cuda else b - a


class _Recorder:
    def __init__(self, clock: _Clock):
        self.clock = clock
        self.marks: list[tuple[str, Any, Any]] = []


_ACTIVE: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar("fastlight_bench_recorder", default=None)


@contextlib.contextmanager
def phase(name: str):
    """Mark a part of a benchmarked callable (e.g. "text", "denoise", "decode").

    Outside `bench_callables` it does nothing. A name used several times in one run is summed.
    """
    rec = _ACTIVE.get()
    if rec is None:
        yield
        return
    start = rec.clock.mark()
    try:
        yield
    finally:
        rec.marks.append((name, start, rec.clock.mark()))


def _read_vmhwm_kb() -> int | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+)\s*kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


class _MemProbe:
    method = "none"

    def start(self) -> None:
        pass

    def stop(self) -> float | None:
        return None


class _CudaMem(_MemProbe):
    method = "cuda_max_memory_allocated"

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> float:
        return torch.cuda.max_memory_allocated(self.device) / 2**20


class _LinuxPeakRss(_MemProbe):
    """Process peak RSS (VmHWM), reset to the current RSS before each run (Linux >= 4.0)."""

    method = "process_peak_rss_vmhwm_reset_per_run"

    @staticmethod
    def _reset() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @classmethod
    def available(cls) -> bool:
        try:
            cls._reset()
        except OSError:
            return False
        return _read_vmhwm_kb() is not None

    def start(self) -> None:
        self._reset()

    def stop(self) -> float | None:
        kb = _read_vmhwm_kb()
        return None if kb is None else kb / 1024


class _SampledRss(_MemProbe):
    """Process RSS sampled by a thread (psutil); can miss spikes shorter than the interval."""

    method = "process_rss_sampled_psutil"

    def __init__(self, interval_s: float = 0.002):
        import psutil

        self.proc = psutil.Process()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self.peak = self.proc.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak / 2**20


class _LifetimeMaxRss(_MemProbe):
    method = "ru_maxrss_lifetime_not_per_model"

    def stop(self) -> float:
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def _mem_probe(device: torch.device) -> _MemProbe:
    if device.type == "cuda":
        return _CudaMem(device)
    if _LinuxPeakRss.available():
        return _LinuxPeakRss()
    try:
        return _SampledRss()
    except ImportError:
        pass
    try:
        import resource  # noqa: F401
    except ImportError:
        return _MemProbe()
    return _LifetimeMaxRss()


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _stats(xs: Sequence[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


# ---- timing arbitrary callables -----------------------------------------------------------------
def bench_callables(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Time callables side by side: `warmup` untimed rounds, then `repeats` timed rounds, each
    round calling every fn once in the given order (A B C A B C ...).

    fn() takes no arguments; it may mark parts with `with phase(name): ...`.
    Returns {name: {"time_s": {median, min, max, runs}, "phases_s": {phase: {median, min, max}},
    "peak_mem_mb", "mem_method", "speedup"}} in the order of `fns`; speedup = the first fn's
    median time / this one's. Times are per call (seconds).
    """
    if not fns:
        raise ValueError("nothing to bench: pass at least one callable")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    dev = resolve_device(device)
    clock = _Clock(dev)
    mem = _mem_probe(dev)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    phases: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    peaks: dict[str, list[float]] = {n: [] for n in names}

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(warmup + repeats) * len(names), desc="bench", leave=False)
    try:
        for rnd in range(warmup + repeats):
            timed = rnd >= warmup
            for name in names:
                if bar is not None:
                    bar.set_postfix_str(f"{'run' if timed else 'warm-up'} {name}", refresh=False)
                rec = _Recorder(clock)
                clock.begin()
                mem.start()
                token = _ACTIVE.set(rec)
                try:
                    t0 = clock.mark()
                    fns[name]()
                    t1 = clock.mark()
                finally:
                    _ACTIVE.reset(token)
                clock.end()
                peak = mem.stop()
                if timed:
                    times[name].append(clock.seconds(t0, t1))
                    if peak is not None:
                        peaks[name].append(peak)
                    per_phase: dict[str, float] = {}
                    for pname, a, b in rec.marks:
                        per_phase[pname] = per_phase.get(pname, 0.0) + clock.seconds(a, b)
                    for pname, sec in per_phase.items():
                        phases[name].setdefault(pname, []).append(sec)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    out: dict[str, dict] = {}
    first = statistics.median(times[names[0]])
    for name in names:
        med = statistics.median(times[name])
        out[name] = {
            "time_s": {**_stats(times[name]), "runs": times[name]},
            "phases_s": {p: _stats(v) for p, v in phases[name].items()},
            "peak_mem_mb": max(peaks[name]) if peaks[name] else None,
            "mem_method": mem.method,
            "speedup": 1.0 if name == names[0] else (first / med if med > 0 else math.inf),
        }
    return out


# ---- Shapes models end to end ------------------------------------------------------------------
class _ForwardCounter:
    """Counts a denoiser's forwards and the samples they saw (forward pre-hook)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.samples = 0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        x = args[0] if args else kwargs["x_t"]
        self.calls += 1
        self.samples += int(x.shape[0])

    def reset(self) -> None:
        self.calls = self.samples = 0

    def remove(self) -> None:
        self._handle.remove()


@dataclass
class _Pipeline:
    spec: ModelSpec
    model: Any
    counter: _ForwardCounter
    batch_size: int
    nfe_seen: list[int] = field(default_factory=list)
    forwards_seen: list[int] = field(default_factory=list)


def _unique_names(specs: Sequence[ModelSpec]) -> list[str]:
    names, seen = [], {}
    for s in specs:
        n = s.name
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return names


def _load_shapes_model(spec: ModelSpec, dev: torch.device):
    from fastlight.models.load import load_denoiser
    from fastlight.models.load import resolve_model_path
    from fastlight.shapes.generate import is_shapes_model

    model = load_denoiser(resolve_model_path(spec.path), dev).eval()
    if not is_shapes_model(model):
        raise ValueError(
            f"{spec.path} is not an embedded Shapes model: `fastlight bench` runs Shapes models end to end; "
            "real Wan/HunyuanVideo folders need text embeddings and a VAE, so time them with the Python API "
            "fastlight.evaluate.bench.bench_callables({'name': fn})"
        )
    bad = [i for i in spec.skip if i >= model.num_blocks]
    if bad:
        raise ValueError(f"{spec.name}: skip ids {bad} out of range; this model has blocks 0..{model.num_blocks - 1}")
    return model


def _shapes_run(p: _Pipeline, dev: torch.device, seed: int) -> Callable[[], None]:
    """The timed closure of one Shapes model: text -> denoise -> decode, with NFE counting."""
    from fastlight.shapes import text, world as shapes
    from fastlight.data import video
    from fastlight.diffusion import sampling
    from fastlight.models.denoiser import Cond
    from fastlight.shapes.generate import world_of

    spec, model, B = p.spec, p.model, p.batch_size
    world = world_of(model)
    clips = shapes.sample_clips(seed, B, world)
    prompts = [c.prompt for c in clips]
    images = shapes.render_batch(clips, world)[:, :, :1].to(dev)  # (B, 3, 1, H, W): inputs, not timed
    shape = (B, 3, world.num_frames, world.size, world.size)
    if spec.sampler == "euler":
        grid = sampling.shifted_grid(spec.steps, spec.shift if spec.shift is not None else model.meta.get("shift", 3.0))
    else:
        grid = sampling.few_step_grid(spec.timesteps)

    def run() -> None:
        p.counter.reset()
        with phase("text"):
            cond = Cond(text.encode(prompts).to(dev), images)
        with phase("denoise"):
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dev)
            if spec.sampler == "euler":
                x = sampling.euler_sample(model, noise, cond, grid, cfg_scale=spec.cfg, skip=spec.skip)
            else:
                gen = torch.Generator(device=dev).manual_seed(seed + 1)
                x = sampling.few_step_sample(model, noise, cond, grid, generator=gen, cfg_scale=spec.cfg, skip=spec.skip)
        with phase("decode"):
            x = x.clamp(-1, 1).cpu()
            frames = [video.to_uint8_frames(v) for v in x]  # noqa: F841  (F, H, W, 3) uint8 each
        if p.counter.samples % B:
            raise RuntimeError(f"{spec.name}: the denoiser saw {p.counter.samples} samples for a batch of {B}")
        nfe = p.counter.samples // B
        if nfe != spec.expected_nfe:
            raise RuntimeError(
                f"{spec.name}: counted {nfe} network evaluations per video, expected {spec.expected_nfe} "
                f"(steps {spec.steps} x {1 if spec.cfg == 1 else 2}); the sampler does not do what the spec says"
            )
        p.nfe_seen.append(nfe)
        p.forwards_seen.append(p.counter.calls)

    return run


def bench(
    specs: Iterable[str | ModelSpec],
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[dict]:
    """Bench Shapes models end to end, side by side. Returns one row per spec (see module doc):

    {model, path, sampler, steps, cfg, skip, timesteps, shift, batch_size, nfe, forwards, dit_params,
     time_s {median, min, max, runs}, text_s, denoise_s, decode_s, peak_mem_mb, mem_method,
     speedup, device}. Times are seconds per video (batch time / batch_size; phases: medians).
    """
    specs = [parse_spec(s) for s in specs]
    if not specs:
        raise ValueError("nothing to bench: give at least one model spec")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch size must be an integer >= 1, got {batch_size!r}")
    dev = resolve_device(device)
    names = _unique_names(specs)
    pipes: list[_Pipeline] = []
    try:
        for spec in specs:
            model = _load_shapes_model(spec, dev)
            pipes.append(_Pipeline(spec, model, _ForwardCounter(model), batch_size))
        fns = {n: _shapes_run(p, dev, seed) for n, p in zip(names, pipes)}
        res = bench_callables(fns, repeats=repeats, warmup=warmup, device=dev, progress=progress)
    finally:
        for p in pipes:
            p.counter.remove()

    rows = []
    for name, p in zip(names, pipes):
        r, s = res[name], p.spec
        per_video = lambda x: x / batch_size  # noqa: E731
        ph = r["phases_s"]
        rows.append({
            "model": name,
            "path": s.path,
            "sampler": s.sampler,
            "steps": s.steps,
            "cfg": s.cfg,
            "skip": list(s.skip),
            "timesteps": list(s.timesteps) if s.timesteps is not None else None,
            "shift": (s.shift if s.shift is not None else p.model.meta.get("shift", 3.0)) if s.sampler == "euler" else None,
            "batch_size": batch_size,
            "nfe": p.nfe_seen[-1],
            "forwards": p.forwards_seen[-1],
            "dit_params": p.model.num_params(s.skip),
            "time_s": {k: per_video(v) for k, v in r["time_s"].items() if k != "runs"}
            | {"runs": [per_video(v) for v in r["time_s"]["runs"]]},
            **{f"{k}_s": per_video(ph[k]["median"]) for k in PHASES},
            "peak_mem_mb": r["peak_mem_mb"],
            "mem_method": r["mem_method"],
            "speedup": r["speedup"],
            "device": str(dev),
        })
    return rows


# ---- CLI --------------------------------------------------------------------------------------
def _fmt_s(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def print_rows(rows: list[dict], console=None) -> None:
    """A rich table of bench rows, then each model's speedup against the first as a ratio."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    first = rows[0]
    t = Table(title=f"fastlight bench ({first['device']}, batch {first['batch_size']}, time per video)")
    for col, just in [("model", "left"), ("sampler", "left"), ("steps", "right"), ("CFG", "right"), ("NFE", "right"),
                      ("DiT params", "right"), ("median", "right"), ("min - max", "right"), ("text", "right"),
                      ("denoise", "right"), ("decode", "right"), ("peak mem", "right"), ("speedup", "right")]:
        t.add_column(col, justify=just)
    for r in rows:
        ts = r["time_s"]
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f} MiB"
        t.add_row(r["model"], r["sampler"], str(r["steps"]), f"{r['cfg']:g}", str(r["nfe"]), _fmt_params(r["dit_params"]),
                  _fmt_s(ts["median"]), f"{_fmt_s(ts['min'])} - {_fmt_s(ts['max'])}", _fmt_s(r["text_s"]),
                  _fmt_s(r["denoise_s"]), _fmt_s(r["decode_s"]), mem, f"{r['speedup']:.2f}x")
    console.print(t)
    # the lines below never wrap (soft_wrap), so what they say does not depend on the terminal's width
    console.print(f"peak memory: {first['mem_method']}", soft_wrap=True)
    for r in rows[1:]:
        work = (first["nfe"] * first["dit_params"]) / max(r["nfe"] * r["dit_params"], 1)
        console.print(f"speedup of {r['model']} vs {first['model']}: {r['speedup']:.2f}x measured "
                      f"(NFE {first['nfe']} -> {r['nfe']}, NFE x params {work:.2f}x fewer)", soft_wrap=True)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    from fastlight.fileio import atomic_write_json

    return atomic_write_json(path, obj)


def bench_command(
    model_specs: Sequence[str],
    batch_size: int = 1,
    repeats: int = 5,
    warmup: int = 1,
    out_json: str | None = None,
    device: str | None = None,
    seed: int = 0,
) -> list[dict]:
    """`fastlight bench --model SPEC [--model SPEC ...]`: print the table, write JSON if asked."""
    if not model_specs:
        raise ValueError(f"give at least one --model {SPEC_FORMAT}")
    specs = [parse_spec(s) for s in model_specs]  # fail on a bad spec before loading anything
    rows = bench(specs, batch_size=batch_size, repeats=repeats, warmup=warmup, device=device, seed=seed, progress=True)
    print_rows(rows)
    if out_json:
        meta = {"torch": torch.__version__, "device": rows[0]["device"], "batch_size": batch_size, "repeats": repeats,
                "warmup": warmup, "seed": seed, "mem_method": rows[0]["mem_method"],
                "specs": [asdict(s) for s in specs]}
        if rows[0]["device"].startswith("cuda"):
            meta["gpu"] = torch.cuda.get_device_name(torch.device(rows[0]["device"]))
        write_json_atomic(out_json, {**meta, "rows": rows})
        print(f"results written to {out_json}")
    return rows
