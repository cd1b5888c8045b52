"""`fastlight export RUN --format diffusers`: a stock diffusers pipeline folder for the student.

    DIR/model_index.json         WanPipeline (or the source pipeline's class, e.g. WanImageToVideoPipeline)
    DIR/transformer/             the student's WanTransformer3DModel (pruned config) + fastlight.json,
                                 null_text.safetensors, sampler.json (so `fastlight sample --model DIR` works)
    DIR/scheduler/               FlowMatchEulerDiscreteScheduler configured so that set_timesteps(K) gives
                                 exactly the student's levels (few-step: stochastic_sampling=True)
    DIR/vae, text_encoder, ...   hard links (or copies) of the source pipeline's entries, when it had them;
                                 null entries in model_index.json otherwise (the pixel-space Shapes models)
    DIR/fastlight_export.json    source, sampler, the call arguments (num_inference_steps, guidance_scale)

The few-step grid is expressed with the scheduler's own config: `shift` and `shift_terminal` (a
shifted linspace from 1000, stretched to end at the last level). Uniform grids such as
1000/750/500/250 are reproduced bit for bit with shift 1; a grid this family cannot hit is refused.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import diffusers
from diffusers import FlowMatchEulerDiscreteScheduler

from fastlight.diffusion.spec import SamplerSpec, choose_sampler
from fastlight.errors import MissingFileError
from fastlight.evaluate.pipelines import pipeline_for
from fastlight.fileio import atomic_dir
from fastlight.export.common import check_out_dir, copy_meta_files, find_model_dir, link_or_copy
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import ModelError
from fastlight.models.load import load_denoiser
from fastlight.models.load import resolve_model_path

GRID_TOL = 1e-6  # max |scheduler sigma - student level| accepted
LINKED_COMPONENTS = ("vae", "text_encoder", "tokenizer", "image_encoder", "image_processor")


# ---- scheduler --------------------------------------------------------------------------------
def scheduler_for(spec: SamplerSpec):
    """A FlowMatchEulerDiscreteScheduler whose set_timesteps(spec.num_steps) gives the student's
    levels (few-step, stochastic) or the Euler grid with the model's shift."""
    if spec.kind == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=spec.shift)
    s = spec.levels
    if s[0] != 1.0:
        raise ModelError(f"the student's first timestep is {1000 * s[0]:g}; diffusers' scheduler always starts at "
                         "1000, so only grids starting at 1000 can be exported")
    if len(s) <= 2:
        return _few_step_scheduler(1.0, s)
    k = len(s)
    lo, hi = math.log(1e-3), math.log(1e3)  # the stretched s_1 grows with the shift: bisect log(shift)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _levels(_few_step_scheduler(math.exp(mid), s), k)[1] < s[1]:
            lo = mid
        else:
            hi = mid
    for shift in (1.0, math.exp(0.5 * (lo + hi))):  # shift exactly 1 when it fits (uniform grids: bit-exact)
        sched = _few_step_scheduler(shift, s)
        if max(abs(a - b) for a, b in zip(_levels(sched, k), s)) <= GRID_TOL:
            return sched
    raise ModelError(f"the student's timesteps {[1000 * x for x in s]} are not a shifted, stretched linspace; "
                     "diffusers' FlowMatchEulerDiscreteScheduler cannot reproduce them with set_timesteps")


def _few_step_scheduler(shift: float, s_list: list[float]):
    kw = {"shift_terminal": s_list[-1]} if len(s_list) > 1 else {}
    return FlowMatchEulerDiscreteScheduler(shift=shift, stochastic_sampling=True, **kw)


def _levels(sched, k: int) -> list[float]:
    """The k levels the scheduler runs at after set_timesteps(k) (no terminal 0)."""
    sched.set_timesteps(k)
    return sched.sigmas[:-1].tolist()


# ---- the source pipeline (VAE, text encoder, tokenizer) ----------------------------------------
def find_source_pipeline(model_dir: Path, meta: dict, source: str | None = None) -> Path | None:
    """The diffusers pipeline folder the student came from: `source` if given, the folder around
    model_dir when it is a pipeline's transformer/, else the first pipeline up the chain of
    fastlight.json "teacher" entries. None when there is none (the pixel-space Shapes models)."""
    if source is not None:
        src = Path(source)
        if not (src / "model_index.json").is_file():
            raise MissingFileError(f"--source {source} is not a diffusers pipeline folder (no model_index.json)")
        return src
    seen, cur, cur_meta = set(), Path(model_dir), meta
    for _ in range(8):
        for cand in (cur, cur.parent):
            if (cand / "model_index.json").is_file():
                return cand
        teacher = cur_meta.get("teacher")
        if not teacher or teacher in seen:
            return None
        seen.add(teacher)
        cur = resolve_model_path(str(teacher))
        if (cur / "model" / "config.json").is_file():
            cur = cur / "model"
        f = cur / "fastlight.json"
        cur_meta = json.loads(f.read_text()) if f.is_file() else {}
    return None


def model_index(source: Path | None) -> tuple[dict, list[str]]:
    """model_index.json for the export and the component folders to link from the source."""
    if source is None:
        index = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__,
                 "boundary_ratio": None, "expand_timesteps": False,
                 "text_encoder": [None, None], "tokenizer": [None, None], "transformer_2": [None, None],
                 "vae": [None, None]}
        linked = []
    else:
        index = json.loads((source / "model_index.json").read_text())
        if "Wan" not in str(index.get("_class_name", "")):
            raise ModelError(f"{source} holds a {index.get('_class_name')}; fastlight exports Wan pipelines only")
        linked = [c for c in LINKED_COMPONENTS if index.get(c) and index[c][0] is not None and (source / c).is_dir()]
        if "transformer_2" in index:  # one student replaces the Wan 2.2 high/low-noise pair
            index["transformer_2"], index["boundary_ratio"] = [None, None], None
    index["transformer"] = ["diffusers", "WanTransformer3DModel"]
    index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    return index, linked


# ---- the command ----------------------------------------------------------------------------------
def export_diffusers(run: str, out: str, overwrite: bool = False, source: str | None = None) -> Path:
    """Write the student in RUN as a diffusers pipeline folder at `out` (atomically)."""
    model_dir = find_model_dir(run)
    den = load_denoiser(model_dir)
    if den.family != "wan":
        raise ModelError(f"{run} is a {type(den.model).__name__}; `fastlight export` supports Wan students only")
    choice = choose_sampler(model_dir)
    print(choice.line)
    spec = choice.spec
    scheduler = scheduler_for(spec)
    src = find_source_pipeline(model_dir, den.meta, source)
    index, linked = model_index(src)
    out_dir = check_out_dir(out, overwrite, tuple(p for p in (model_dir, src) if p is not None))
    with atomic_dir(out_dir) as tmp:
        den.model.save_pretrained(tmp / "transformer", safe_serialization=True)
        copy_meta_files(model_dir, tmp / "transformer", skip=("config.json", "sampler.json"))
        spec.save(tmp / "transformer")  # every export says how it samples, the default Euler sampler too
        scheduler.save_pretrained(tmp / "scheduler")
        for comp in linked:
            shutil.copytree(src / comp, tmp / comp, copy_function=link_or_copy)
        atomic_write_json(tmp / "model_index.json", index)
        atomic_write_json(tmp / "fastlight_export.json", export_info(run, model_dir, src, linked, spec, den, index))
    return out_dir


def export_info(run, model_dir: Path, src: Path | None, linked: list[str], spec: SamplerSpec, den, index: dict) -> dict:
    """What the export holds and how to call the pipeline (written as fastlight_export.json)."""
    info = {"format": "diffusers", "run": str(run), "model": str(model_dir), "source_pipeline": str(src) if src else None,
            "linked": linked, "pipeline": index["_class_name"], "sampler": spec.to_json(),
            "call": {"num_inference_steps": spec.num_steps, "guidance_scale": spec.guidance,
                     "negative_prompt_embeds": "transformer/null_text.safetensors (null_text), padded with zero tokens"},
            "params": sum(p.numel() for p in den.model.parameters())}
    pipe = pipeline_for(den)
    if pipe is not None:  # a plug-in world (e.g. Shapes): its latent layout, and what the stock pipelines cannot do
        info["latent_shape"] = list(pipe.latent_shape(den))
        info["ti2v"] = ("the stock WanPipeline runs text-to-video; a pixel-space TI2V model (clean first frame, "
                        "timestep 0 on its tokens) cannot be expressed by the stock pipelines "
                        "(WanImageToVideoPipeline needs a VAE and assumes a 2x2 spatial patch): use "
                        "`fastlight sample --model DIR` for that")
    return info
