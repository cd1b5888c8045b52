"""Bench real diffusers pipelines side by side: the stock pipeline of the teacher (e.g. Wan 2.1,
50 steps, CFG 5) against the exported student (`fastlight export --format diffusers`), each loaded
with `diffusers.DiffusionPipeline.from_pretrained` (the class its model_index.json names) and timed
on its real `pipe(...)` call (output_type="np": decode and postprocessing included).

    rows = bench_pipelines([PipelineEntry("teacher", "Wan2.1-T2V-1.3B-Diffusers"),
                            PipelineEntry("student", "runs/wan/export")],
                           ["a dog runs through a field"], num_frames=81, height=480, width=832)

One timed run of an entry generates one video per prompt (one `pipe` call each, a generator seeded
`seed + i` for prompt i, the same for every entry). Timing method: `timing.bench_callables` (warm-up,
interleaved rounds A B A B, median / min / max, CUDA events). The phases of a run (per video):

    text     the pipeline's `encode_prompt` (prompt and, with CFG, negative prompt)
    denoise  from the first transformer forward to the start of `vae.decode`: every network
             evaluation and scheduler step (latent preparation and set_timesteps come before it)
    decode   `vae.decode`
    rest     end to end - the three: latent / first-frame preparation, postprocessing to numpy

Network evaluations (NFE) are counted with a forward pre-hook on the transformer(s) (samples seen,
so a batched cond + uncond counts 2) and checked against steps x (2 if CFG): CFG when guidance > 1,
except for pipelines whose guidance is an embedded (distilled) guidance, i.e. that take
`true_cfg_scale` (HunyuanVideo): one forward per step.

Steps and guidance: given, else the folder's fastlight_export.json "call" (what the export says it
runs with), else the pipeline's own `__call__` defaults (Wan: 50, 5.0; HunyuanVideo: 50, 6.0), else
50 and 5.0. Text length: the folder's own record (`fastlight.data.latents.pipeline_text_len`, e.g. a
Shapes pipeline's 16 tokens) is passed as `max_sequence_length`; a folder without one (a real Wan
download) runs the stock default (512). Plug-in components a folder names (the Shapes phrase encoder)
are imported before loading (`import_pipeline_components`), so any folder benches in a fresh process.
Pipelines that take an `image` (WanImageToVideoPipeline, e.g. Wan 2.2 TI2V as I2V) get a deterministic
first frame, built once (not timed).

Peak memory, per entry = the bytes of its own weights (parameters + buffers of its components) +
the peak increase during its timed runs over the memory in use when a run starts. Every entry stays
loaded for the whole bench (interleaved rounds), so a raw peak would include the other entries'
weights; this is what the pipeline needs alone.
- CUDA (mem_method "cuda max_memory_allocated"): increase = max_memory_allocated (reset before each
  run) - memory_allocated at the run's start; exact up to the caching allocator's fragmentation.
- CPU (mem_method "cpu rss"): increase = the process's peak RSS during the run (VmHWM reset per run
  on Linux, else psutil sampling; `timing.py`) - its RSS at the run's start. RSS is process-wide, so
  the interpreter and torch (~hundreds of MiB) are left out, and memory the allocator kept from an
  earlier run (any entry's) is reused without raising RSS, which can make a later run's increase
  smaller than what it would need alone. Where only a lifetime peak exists (ru_maxrss), peak_mem_mb
  is None: it cannot be told apart per entry.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import diffusers
import numpy as np
import torch
import transformers
from diffusers import DiffusionPipeline
from PIL import Image

from fastlight.data.latents import pipeline_text_len
from fastlight.errors import InputError, MissingFileError, ModelError
from fastlight.evaluate.timing import bench_callables, phase, resolve_device, unique_names
from fastlight.fileio import atomic_write_json, read_json_object
from fastlight.models.load import import_pipeline_components

EXPORT_INFO = "fastlight_export.json"
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 5.0
MAX_CALLS = 5  # balanced rounds: a much cheaper pipeline runs up to this many times per timed round
OPTION_KEYS = ("steps", "guidance")
REQUIRED_COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer")
SPEC_FORMAT = "PIPELINE_FOLDER[:steps=N,guidance=G]"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# the per-run memory probes of timing.py that measure one run (not the process's lifetime)
PER_RUN_PROBES = ("cuda_max_memory_allocated", "process_peak_rss_vmhwm_reset_per_run", "process_rss_sampled_psutil")


@dataclass
class PipelineEntry:
    """One pipeline to bench: a name for the table, a diffusers pipeline folder (model_index.json)
    and, optionally, its call arguments (None: the folder's fastlight_export.json "call", else the
    pipeline's defaults)."""

    name: str
    path: str                         # a diffusers pipeline folder (model_index.json)
    num_inference_steps: int | None = None   # None: fastlight_export.json "call", else 50
    guidance_scale: float | None = None      # None: fastlight_export.json "call", else 5.0


# ---- specs and folders --------------------------------------------------------------------------
def _spec_error(text: str, msg: str) -> InputError:
    return InputError(f"--pipeline {text!r}: {msg} (format: {SPEC_FORMAT})")


def _check_steps(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{where}: steps must be a whole number >= 1, got {value!r}")
    return int(value)


def _check_guidance(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"{where}: guidance must be a finite number >= 0 (1 = no CFG), got {value!r}")
    return float(value)


def parse_pipeline_spec(text: str) -> PipelineEntry:
    """'PATH[:steps=N,guidance=G]' -> a PipelineEntry named `text`. A ':' whose tail is not
    key=value pairs is part of the path (C:\\models\\wan)."""
    if not text or not text.strip():
        raise _spec_error(text, "empty pipeline spec")
    path, opts = text, ""
    head, sep, tail = text.rpartition(":")
    if sep and (tail == "" or "=" in tail):
        path, opts = head, tail
        if not tail:
            raise _spec_error(text, "nothing after ':'")
    if not path:
        raise _spec_error(text, "no pipeline folder before ':'")
    kw: dict[str, Any] = {}
    for item in (opts.split(",") if opts else []):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq:
            raise _spec_error(text, f"{item!r} is not key=value")
        if key not in OPTION_KEYS:
            raise _spec_error(text, f"unknown key {key!r}; the keys are {', '.join(OPTION_KEYS)}")
        if key in kw:
            raise _spec_error(text, f"{key} given twice")
        kw[key] = _parse_option(text, key, value)
    return PipelineEntry(text, path, kw.get("steps"), kw.get("guidance"))


def _parse_option(text: str, key: str, value: str) -> int | float:
    try:
        v = int(value) if key == "steps" else float(value)
    except ValueError:
        v = None
    if key == "steps" and (v is None or v < 1):
        raise _spec_error(text, f"steps must be a whole number >= 1, got {value!r}")
    if key == "guidance" and (v is None or not math.isfinite(v) or v < 0):
        raise _spec_error(text, f"guidance must be a finite number >= 0 (1 = no CFG), got {value!r}")
    return v


def check_pipeline_folder(path: str | Path) -> Path:
    """The folder, if it is a diffusers pipeline folder (has model_index.json); one-line errors otherwise.
    The plug-in classes it names are imported (diffusers takes them from sys.modules only)."""
    p = Path(path)
    fix = ("pass a diffusers pipeline folder (with model_index.json), e.g. a *-Diffusers download or the folder "
           "`fastlight export --format diffusers` writes")
    if not p.exists():
        raise MissingFileError(f"pipeline folder {p} does not exist; {fix}")
    if not p.is_dir():
        raise ModelError(f"{p} is a file, not a pipeline folder; {fix}")
    if not (p / "model_index.json").is_file():
        hint = "; for a fastlight model folder use `fastlight bench --model`" if (p / "config.json").is_file() else ""
        raise ModelError(f"{p} is not a diffusers pipeline folder (no model_index.json); {fix}{hint}")
    _check_components(p)
    import_pipeline_components(p)
    return p


def _check_components(folder: Path) -> None:
    """Every component model_index.json names has its folder; the ones a prompt -> video call needs are there."""
    index = read_json_object(folder / "model_index.json", ModelError, "re-save the pipeline with save_pretrained")
    fix = ("the bench times the whole prompt -> video call, so it needs a complete pipeline folder: export the student "
           "with `fastlight export RUN --format diffusers --source TEACHER_PIPELINE` (it links the teacher's vae/, "
           "text_encoder/ and tokenizer/)")
    for name in REQUIRED_COMPONENTS:
        value = index.get(name)
        if not (isinstance(value, list) and value and value[0] is not None):
            raise ModelError(f"{folder} has no {name} (model_index.json: {name} {value!r}); {fix}")
    for name, value in index.items():
        if isinstance(value, list) and len(value) == 2 and value[0] is not None and not (folder / name).is_dir():
            raise MissingFileError(f"{folder}/model_index.json names {name} ({value[1]}) but {folder / name}/ "
                                   f"is missing; {fix}")


def export_call(folder: Path) -> dict:
    """{num_inference_steps?, guidance_scale?} from the folder's fastlight_export.json "call" ({} if none)."""
    f = folder / EXPORT_INFO
    if not f.is_file():
        return {}
    call = read_json_object(f, ModelError, "re-export the student with `fastlight export --format diffusers`").get("call")
    if not isinstance(call, dict):
        raise ModelError(f"{f} has no \"call\" object; re-export the student with `fastlight export --format diffusers`")
    out = {}
    if call.get("num_inference_steps") is not None:
        out["num_inference_steps"] = _check_steps(call["num_inference_steps"], f"{f} call.num_inference_steps")
    if call.get("guidance_scale") is not None:
        out["guidance_scale"] = _check_guidance(call["guidance_scale"], f"{f} call.guidance_scale")
    return out


def resolve_call(entry: PipelineEntry, call_params: dict[str, inspect.Parameter]) -> tuple[int, float, str]:
    """(steps, guidance, where they came from) for an entry whose pipeline's __call__ has `call_params`."""
    exported = export_call(Path(entry.path))

    def default(key, fallback):
        p = call_params.get(key)
        return p.default if p is not None and isinstance(p.default, (int, float)) else fallback

    sources, values = [], []
    for key, given, fallback in (("num_inference_steps", entry.num_inference_steps, DEFAULT_STEPS),
                                 ("guidance_scale", entry.guidance_scale, DEFAULT_GUIDANCE)):
        if given is not None:
            values.append(given), sources.append("given")
        elif key in exported:
            values.append(exported[key]), sources.append(EXPORT_INFO)
        else:
            values.append(default(key, fallback)), sources.append("pipeline default")
    steps = _check_steps(values[0], entry.name)
    guidance = _check_guidance(values[1], entry.name)
    where = sources[0] if sources[0] == sources[1] else f"steps: {sources[0]}, guidance: {sources[1]}"
    return steps, guidance, where


def _dtype(dtype: str | torch.dtype | None, dev: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


# ---- one loaded pipeline --------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_loading():
    """diffusers' and transformers' loading bars off (stderr stays for errors), restored afterwards."""
    libs = [lib for lib in (diffusers.utils.logging, transformers.utils.logging) if lib.is_progress_bar_enabled()]
    for lib in libs:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib in libs:
            lib.enable_progress_bar()


def _load_pipeline(folder: Path, dev: torch.device, dtype: torch.dtype):
    try:
        with warnings.catch_warnings(), _quiet_loading():  # diffusers >= 0.42 renames torch_dtype to dtype; >= 0.35 is supported
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype)
    except (OSError, ValueError, KeyError, AttributeError) as e:  # diffusers' ways of saying a folder is broken
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise ModelError(f"{folder}: diffusers cannot load this pipeline folder ({first}); "
                         "check that every component model_index.json names has its folder") from None
    for comp in ("transformer", "vae"):
        if getattr(pipe, comp, None) is None:
            raise ModelError(f"{folder} has no {comp} ({type(pipe).__name__} loaded with {comp}=None); the bench times "
                             f"the whole text -> video call, which needs it: use a complete pipeline folder")
    pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _check_size(pipe, name: str, num_frames: int, height: int, width: int) -> None:
    """Refuse a frame count / size the pipeline would silently round (one line, with valid values)."""
    t = int(getattr(pipe, "vae_scale_factor_temporal", 1) or 1)
    if num_frames < 1 or (num_frames - 1) % t:
        k = max(0, round((num_frames - 1) / t))
        raise InputError(f"{name}: num_frames {num_frames} is not 1 + {t}k for this pipeline's VAE; "
                         f"use e.g. {1 + t * k} or {1 + t * (k + 1)}")
    patch = pipe.transformer.config.get("patch_size", 1)
    patch = int(patch[-1] if isinstance(patch, (list, tuple)) else patch or 1)
    s = int(getattr(pipe, "vae_scale_factor_spatial", 8) or 8) * patch
    for what, v in (("height", height), ("width", width)):
        if v < s or v % s:
            raise InputError(f"{name}: {what} {v} is not a multiple of {s} (VAE {s // patch}x x patch {patch}); "
                             f"use e.g. {max(s, v // s * s)}")


def _transformers(pipe) -> list[torch.nn.Module]:
    """The denoisers a call may run: transformer, and Wan 2.2's low-noise transformer_2."""
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


def _weights_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of the pipeline's torch components (shared tensors once)."""
    seen, total = set(), 0
    for comp in pipe.components.values():
        if isinstance(comp, torch.nn.Module):
            for t in [*comp.parameters(), *comp.buffers()]:
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
    return total


def first_frame(height: int, width: int) -> Image.Image:
    """A deterministic first frame for image-to-video pipelines: smooth colour ramps and a disc."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r, g = x / max(width - 1, 1), y / max(height - 1, 1)
    disc = ((x - width / 3) ** 2 + (y - height / 2) ** 2) < (min(height, width) / 4) ** 2
    img = np.stack([r, g, np.where(disc, 1.0, 0.25)], axis=-1)
    return Image.fromarray((img * 255).round().astype(np.uint8), mode="RGB")


def _current_mem(dev: torch.device) -> float | None:
    """Memory in use now, MiB: CUDA allocated, or the process's RSS."""
    if dev.type == "cuda":
        return torch.cuda.memory_allocated(dev) / 2**20
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pass
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class _Hooks:
    """Counts transformer forwards and marks the phases of one pipeline's calls (see the module doc)."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.samples = self.forwards = 0
        self._denoise: contextlib.AbstractContextManager | None = None
        self._handles = [m.register_forward_pre_hook(self._on_forward, with_kwargs=True) for m in _transformers(pipe)]
        # instance attributes shadow the methods the pipeline calls as self.encode_prompt / self.vae.decode
        pipe.encode_prompt = self._wrap(pipe.encode_prompt, "text")
        pipe.vae.decode = self._wrap(pipe.vae.decode, "decode", before=self.end_denoise)

    def _wrap(self, fn: Callable, name: str, before: Callable[[], None] | None = None) -> Callable:
        def wrapped(*args, **kwargs):
            if before is not None:
                before()
            with phase(name):
                return fn(*args, **kwargs)
        return wrapped

    def _on_forward(self, module, args, kwargs) -> None:
        x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.forwards += 1
        self.samples += int(x.shape[0])
        if self._denoise is None:
            self._denoise = phase("denoise")
            self._denoise.__enter__()

    def end_denoise(self) -> None:
        if self._denoise is not None:
            self._denoise.__exit__(None, None, None)
            self._denoise = None

    def reset(self) -> None:
        self.samples = self.forwards = 0
        self._denoise = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for obj, attr in ((self.pipe, "encode_prompt"), (self.pipe.vae, "decode")):
            if attr in vars(obj):
                delattr(obj, attr)


@dataclass
class _Loaded:
    """An entry being benched: its pipeline, call arguments and what its runs measured."""

    entry: PipelineEntry
    pipe: Any
    steps: int
    guidance: float
    cfg: bool
    hooks: _Hooks
    image: Any = None
    text_len: int | None = None  # max_sequence_length passed (the folder's record); None: the pipeline's default
    nfe_seen: tuple[int, int] | None = None  # (nfe per video, forwards per video) of the last run
    mem_base: list[float] | None = None      # memory in use at each run's start, MiB

    @property
    def expected_nfe(self) -> int:
        return self.steps * (2 if self.cfg else 1)


def _load(entry: PipelineEntry, dev: torch.device, dtype: torch.dtype, num_frames: int, height: int, width: int,
          progress: bool) -> _Loaded:
    folder = check_pipeline_folder(entry.path)
    if progress:
        print(f"{entry.name}: loading {folder} ...", flush=True)
    pipe = _load_pipeline(folder, dev, dtype)
    _check_size(pipe, entry.name, num_frames, height, width)
    params = inspect.signature(type(pipe).__call__).parameters
    steps, guidance, where = resolve_call(entry, params)
    # a pipeline taking true_cfg_scale (HunyuanVideo) feeds guidance_scale to a guidance embedding: one forward
    cfg = guidance > 1.0 and "true_cfg_scale" not in params
    image = first_frame(height, width) if "image" in params else None
    text_len = pipeline_text_len(folder) if "max_sequence_length" in params else None
    if progress:
        text = f", text {text_len} tokens (the folder's own)" if text_len is not None else ""
        print(f"{entry.name}: {type(pipe).__name__}, {steps} steps, guidance {guidance:g} "
              f"({'CFG' if cfg else 'no CFG'}; {where}){text}")
    return _Loaded(entry, pipe, steps, guidance, cfg, _Hooks(pipe), image, text_len, mem_base=[])


def _timed_run(e: _Loaded, prompts: Sequence[str], dev: torch.device, num_frames: int, height: int, width: int,
               seed: int) -> Callable[[], None]:
    """The closure bench_callables times: one video per prompt, NFE counted and checked."""
    kwargs = dict(num_frames=num_frames, height=height, width=width, num_inference_steps=e.steps,
                  guidance_scale=e.guidance, output_type="np")
    if e.image is not None:
        kwargs["image"] = e.image
    if e.text_len is not None:
        kwargs["max_sequence_length"] = e.text_len

    def run() -> None:
        e.mem_base.append(_current_mem(dev))
        e.hooks.reset()
        for i, prompt in enumerate(prompts):
            e.pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed + i), **kwargs)
            e.hooks.end_denoise()  # a pipeline that never decodes: the span ends with the call
        n = len(prompts)
        if e.hooks.samples % n:
            raise RuntimeError(f"{e.entry.name}: the transformer saw {e.hooks.samples} samples for {n} videos")
        nfe = e.hooks.samples // n
        if nfe != e.expected_nfe:
            raise RuntimeError(
                f"{e.entry.name}: counted {nfe} transformer evaluations per video, expected {e.expected_nfe} "
                f"({e.steps} steps x {2 if e.cfg else 1}); {type(e.pipe).__name__} does not run what its "
                "arguments say")
        e.nfe_seen = (nfe, e.hooks.forwards // n)

    return run


# ---- rows ---------------------------------------------------------------------------------------------
def _mem(e: _Loaded, r: dict, warmup: int, dev: torch.device) -> dict:
    weights = _weights_bytes(e.pipe) / 2**20
    bases = [b for b in (e.mem_base or [])[warmup:] if b is not None]
    peak = r["peak_mem_mb"]
    method = "cuda max_memory_allocated" if dev.type == "cuda" else "cpu rss"
    if peak is None or not bases or r["mem_method"] not in PER_RUN_PROBES:
        return {"peak_mem_mb": None, "weights_mb": weights, "run_mem_mb": None, "mem_method": method,
                "mem_probe": r["mem_method"]}
    run_mem = max(0.0, peak - min(bases))
    return {"peak_mem_mb": weights + run_mem, "weights_mb": weights, "run_mem_mb": run_mem, "mem_method": method,
            "mem_probe": r["mem_method"]}


def _call_default(pipe, name: str):
    """The default of `name` in the pipeline's __call__ (None if it takes no such argument)."""
    p = inspect.signature(type(pipe).__call__).parameters.get(name)
    return None if p is None or p.default is inspect.Parameter.empty else p.default


def _decoder_params(pipe) -> int | None:
    """Parameters of the VAE's decoder (what a light decoder shrinks; None for a VAE without a `decoder`)."""
    decoder = getattr(pipe.vae, "decoder", None)
    return None if decoder is None else sum(p.numel() for p in decoder.parameters())


def _row(e: _Loaded, r: dict, first: dict, n: int, warmup: int, dev: torch.device, dtype: torch.dtype) -> dict:
    ph = {k: (r["phases_s"][k]["median"] / n if k in r["phases_s"] else 0.0) for k in ("text", "denoise", "decode")}
    first_denoise = first["phases_s"]["denoise"]["median"] / n if "denoise" in first["phases_s"] else 0.0
    nfe, forwards = e.nfe_seen
    ts = r["time_s"]
    return {
        "model": e.entry.name,
        "path": e.entry.path,
        "pipeline": type(e.pipe).__name__,
        "num_inference_steps": e.steps,
        "guidance_scale": e.guidance,
        "cfg": e.cfg,
        "max_sequence_length": e.text_len if e.text_len is not None else _call_default(e.pipe, "max_sequence_length"),
        "nfe": nfe,
        "forwards": forwards,
        "dit_params": sum(p.numel() for p in e.pipe.transformer.parameters()),
        "decoder_params": _decoder_params(e.pipe),
        "time_s": {"median": ts["median"] / n, "min": ts["min"] / n, "max": ts["max"] / n,
                   "runs": [t / n for t in ts["runs"]]},
        "text_s": ph["text"],
        "denoise_s": ph["denoise"],
        "decode_s": ph["decode"],
        **_mem(e, r, warmup, dev),
        "speedup": r["speedup"],
        "denoise_speedup": first_denoise / ph["denoise"] if ph["denoise"] > 0 else math.inf,
        "videos_per_run": n,
        "calls_per_round": r["calls_per_round"],
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(dev),
    }


def _check_args(entries, prompts, num_frames, height, width, repeats, warmup, max_calls) -> None:
    if not entries:
        raise InputError(f"nothing to bench: give at least one pipeline ({SPEC_FORMAT})")
    if isinstance(prompts, str):
        raise InputError("prompts must be a list of prompts, not one string: pass [prompt]")
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise InputError("give at least one non-empty prompt")
    for what, v, lo in (("num_frames", num_frames, 1), ("height", height, 1), ("width", width, 1),
                        ("repeats", repeats, 1), ("warmup", warmup, 0), ("max_calls", max_calls, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(f"{what} must be a whole number >= {lo}, got {v!r}")
    for en in entries:
        check_pipeline_folder(en.path)  # every folder before loading any
        if en.num_inference_steps is not None:
            _check_steps(en.num_inference_steps, en.name)
        if en.guidance_scale is not None:
            _check_guidance(en.guidance_scale, en.name)


def bench_pipelines(entries: Sequence[PipelineEntry], prompts: Sequence[str], *, num_frames: int, height: int,
                    width: int, repeats: int = 3, warmup: int = 1, seed: int = 0,
                    device: str | torch.device | None = None, out_json: str | Path | None = None,
                    progress: bool = True, dtype: str | torch.dtype | None = None,
                    max_calls: int = MAX_CALLS) -> list[dict]:
    """Bench diffusers pipeline folders end to end in one process, interleaved, after warm-up.

    Returns one row per entry (the first is the baseline of the speedups):
    {model, path, pipeline (class name), num_inference_steps, guidance_scale, cfg, max_sequence_length (the
     text length it ran at: the folder's record, else the __call__ default), nfe (transformer
     evaluations per video, counted and checked), forwards, dit_params, decoder_params (the VAE decoder's: what a
     light decoder shrinks), time_s {median, min, max, runs}
     (end to end, per video), text_s, denoise_s, decode_s (medians per video), peak_mem_mb, weights_mb,
     run_mem_mb, mem_method ("cuda max_memory_allocated" | "cpu rss"), mem_probe, speedup (end to end vs
     the first), denoise_speedup (first denoise_s / this denoise_s), videos_per_run, calls_per_round, dtype,
     device}. `max_calls`: a pipeline much cheaper than the slowest is run up to that many times per round
    (timing.bench_callables: steadier medians for the cheap rows; runs has repeats x calls_per_round entries).
    `dtype` of every component: default bfloat16 on CUDA, float32 on CPU. With `out_json`, the rows and
    the run's settings are written there (atomically). See the module doc for the method.
    """
    entries = list(entries)
    entries = [replace(en, name=n) for en, n in zip(entries, unique_names(entries))]
    prompts = list(prompts) if not isinstance(prompts, str) else prompts
    _check_args(entries, prompts, num_frames, height, width, repeats, warmup, max_calls)
    dev = resolve_device(device)
    dt = _dtype(dtype, dev)
    loaded: list[_Loaded] = []
    try:
        for en in entries:
            loaded.append(_load(en, dev, dt, num_frames, height, width, progress))
        fns = {e.entry.name: _timed_run(e, prompts, dev, num_frames, height, width, seed) for e in loaded}
        res = bench_callables(fns, repeats=repeats, warmup=warmup, device=dev, progress=progress, max_calls=max_calls)
    finally:
        for e in loaded:
            e.hooks.remove()
    first = res[loaded[0].entry.name]
    rows = [_row(e, res[e.entry.name], first, len(prompts), warmup, dev, dt) for e in loaded]
    if out_json:
        meta = {"torch": torch.__version__, "diffusers": diffusers.__version__, "device": str(dev),
                "dtype": rows[0]["dtype"], "prompts": prompts, "num_frames": num_frames, "height": height,
                "width": width, "repeats": repeats, "warmup": warmup, "max_calls": max_calls, "seed": seed,
                "mem_method": rows[0]["mem_method"]}
        if dev.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(dev)
        atomic_write_json(out_json, {**meta, "rows": rows})
    return rows


# ---- the printed table ----------------------------------------------------------------------------
def _fmt_s(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _fmt_x(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}x"


TABLE_COLUMNS = ("model", "pipeline", "steps", "guidance", "NFE", "DiT params", "decoder params", "end to end",
                 "min - max", "text",
                 "denoise", "decode", "rest", "peak mem", "speedup e2e", "speedup denoise")


def table_lines(rows: Sequence[dict]) -> list[str]:
    """The bench table as plain text lines, each column as wide as its widest cell: nothing is wrapped
    or cut, whatever the terminal's width (a long model name widens its column)."""
    first = rows[0]
    cells = [list(TABLE_COLUMNS)]
    for r in rows:
        ts = r["time_s"]
        rest = max(0.0, ts["median"] - r["text_s"] - r["denoise_s"] - r["decode_s"])
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f} MiB"
        cells.append([r["model"], r["pipeline"], str(r["num_inference_steps"]), f"{r['guidance_scale']:g}",
                      str(r["nfe"]), _fmt_params(r["dit_params"]),
                      "-" if r.get("decoder_params") is None else _fmt_params(r["decoder_params"]), _fmt_s(ts["median"]),
                      f"{_fmt_s(ts['min'])} - {_fmt_s(ts['max'])}", _fmt_s(r["text_s"]), _fmt_s(r["denoise_s"]),
                      _fmt_s(r["decode_s"]), _fmt_s(rest), mem, _fmt_x(r["speedup"]), _fmt_x(r["denoise_speedup"])])
    widths = [max(len(row[i]) for row in cells) for i in range(len(TABLE_COLUMNS))]
    left = {0, 1}  # names left-aligned, numbers right-aligned

    def line(row):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    out = [f"fastlight bench --pipeline ({first['device']}, {first['dtype']}, time per video, "
           f"{first['videos_per_run']} video(s) per run)", line(cells[0]), line(["-" * w for w in widths])]
    out += [line(row) for row in cells[1:]]
    out.append(f"peak memory: {first['mem_method']} ({first['mem_probe']}): own weights + the peak increase during "
               "its runs")
    for r in rows:
        e2e = r["time_s"]["median"]
        share = {k: 100 * r[f"{k}_s"] / e2e if e2e > 0 else 0.0 for k in ("text", "denoise", "decode")}
        out.append(f"{r['model']}: text {share['text']:.0f}%, denoise {share['denoise']:.0f}%, "
                   f"decode {share['decode']:.0f}% of end to end")
    for r in rows[1:]:
        out.append(f"speedup of {r['model']} vs {first['model']}: {_fmt_x(r['speedup'])} end to end, "
                   f"{_fmt_x(r['denoise_speedup'])} denoise only (NFE {first['nfe']} -> {r['nfe']}, "
                   f"DiT params {_fmt_params(first['dit_params'])} -> {_fmt_params(r['dit_params'])}"
                   + _decoder_change(first, r) + ")")
    return out


def _decoder_change(first: dict, r: dict) -> str:
    """', decoder params A -> B, decode X.XXx' where the VAE decoder differs (a light decoder), else ''."""
    a, b = first.get("decoder_params"), r.get("decoder_params")
    if a is None or b is None or a == b:
        return ""
    speed = first["decode_s"] / r["decode_s"] if r["decode_s"] > 0 else math.inf
    return f", decoder params {_fmt_params(a)} -> {_fmt_params(b)}, decode {_fmt_x(speed)}"


def print_table(rows: Sequence[dict], file=None) -> None:
    """Print `table_lines(rows)` (to stdout by default)."""
    print("\n".join(table_lines(rows)), file=file)
