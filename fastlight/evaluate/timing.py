"""The timing harness of `fastlight bench`: clocks, named phases, peak-memory probes, network
evaluations counted, and `bench_callables`, which times callables side by side.

Method (see benchmarks/README.md):
- `warmup` untimed rounds, then `repeats` timed rounds, interleaved A B C A B C ... so that drift
  (thermal, other load) hits every callable alike; per callable: median / min / max;
- `max_calls` > 1 balances the rounds: a callable much cheaper than the slowest one (by its warm-up time) is
  called several times in a row each round (calls_per_round = floor(slowest / 2 / its time), 1..max_calls), so
  a 30x cheaper row gets 15 timed calls instead of 3 for ~1/6 more time: a steadier median for the cheap rows
  (one call per round of a 0.1 s row beside a 3 s row moved its ratio ~30% between two benches on 2 CPU cores);
- CUDA: the device is synchronised before a run and times come from CUDA events recorded on
  the current stream (phase boundaries too), read after a final synchronisation;
  CPU: `time.perf_counter`;
- peak memory, per callable = the highest value over its timed runs, in MiB (2^20 bytes):
  CUDA `max_memory_allocated` (reset before each run); on Linux CPU the process's peak RSS
  (VmHWM), reset before each run through /proc/self/clear_refs, so it is the high-water mark
  of the whole process (all loaded models, Python, torch) *during that run*; without that,
  psutil RSS sampled every few ms by a thread (may miss short spikes); as a last resort
  `resource.getrusage` ru_maxrss, a lifetime peak that is NOT per callable (flagged in `mem_method`).

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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from fastlight.errors import InputError

PHASES = ("text", "denoise", "decode")


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
        raise InputError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available here; use --device cpu")
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
    max_calls: int = 1,
) -> dict[str, dict]:
    """Time callables side by side: `warmup` untimed rounds, then `repeats` timed rounds, each
    round calling every fn in the given order (A B C A B C ...): once, or with `max_calls` > 1 (and a
    warm-up) calls_per_round times in a row (the module doc: cheap rows get more timed calls).

    fn() takes no arguments; it may mark parts with `with phase(name): ...`.
    Returns {name: {"time_s": {median, min, max, runs}, "phases_s": {phase: {median, min, max}},
    "peak_mem_mb", "mem_method", "speedup", "calls_per_round"}} in the order of `fns`; speedup = the first
    fn's median time / this one's. Times are per call (seconds); runs has repeats x calls_per_round entries.
    """
    if not fns:
        raise InputError("nothing to bench: pass at least one callable")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be an integer >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be an integer >= 0, got {warmup!r}")
    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
        raise InputError(f"max_calls must be an integer >= 1, got {max_calls!r}")
    dev = resolve_device(device)
    clock = _Clock(dev)
    mem = _mem_probe(dev)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    phases: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    peaks: dict[str, list[float]] = {n: [] for n in names}
    warm: dict[str, float] = {}  # the last warm-up time per fn
    calls = {n: 1 for n in names}

    bar = None
    if progress:
        bar = tqdm(total=(warmup + repeats) * len(names), desc="bench", leave=False)
    try:
        for rnd in range(warmup + repeats):
            timed = rnd >= warmup
            if rnd == warmup and warmup and max_calls > 1:
                calls = balanced_calls(warm, max_calls)
                if bar is not None:
                    bar.total = warmup * len(names) + repeats * sum(calls.values())
            for name in [n for n in names for _ in range(calls[n] if timed else 1)]:
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
                if not timed:
                    warm[name] = clock.seconds(t0, t1)
                else:
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
            "calls_per_round": calls[name],
        }
    return out


def balanced_calls(warm_s: Mapping[str, float], max_calls: int) -> dict[str, int]:
    """Calls per timed round from warm-up times: floor(slowest / 2 / own), clipped to 1..max_calls, so that
    each fn runs at least ~half the slowest one's time per round (the slowest and anything within 2x of it: 1)."""
    slowest = max(warm_s.values())
    return {n: max_calls if t <= 0 else max(1, min(max_calls, int(slowest / 2 / t))) for n, t in warm_s.items()}


def unique_names(items) -> list[str]:
    """The items' `.name`s, a repeated one numbered from its second use (`a`, `a#2`, ...): the row
    names of a bench where the same model (or pipeline) appears twice."""
    names, seen = [], {}
    for item in items:
        n = item.name
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return names


class ForwardCounter:
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
