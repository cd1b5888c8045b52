"""`fastlight export RUN --format diffusers`: a stock diffusers pipeline folder for the student.

    DIR/model_index.json         the source pipeline's class (WanPipeline, WanImageToVideoPipeline,
                                 HunyuanVideoPipeline, ...; WanPipeline for the Shapes models)
    DIR/transformer/             the student's WanTransformer3DModel / HunyuanVideoTransformer3DModel (pruned
                                 config) + fastlight.json, null_text.safetensors, sampler.json, manifest.json,
                                 plan.json (so `fastlight sample --model DIR` works)
    DIR/scheduler/               FlowMatchEulerDiscreteScheduler configured so that the pipeline's own call with
                                 num_inference_steps=K runs exactly the student's levels (few-step:
                                 stochastic_sampling=True)
    DIR/vae, text_encoder, ...   hard links (or copies) of the source pipeline's entries (HunyuanVideo: also
                                 text_encoder_2, tokenizer_2); null entries in model_index.json for the
                                 pixel-space Shapes models, which have none
    DIR/fastlight_export.json    source, sampler, how to call the stock pipeline

`export_light_decoder(DIR, DECODER, DIR_LIGHT)`: the same pipeline with a light (pruned, distilled)
AutoencoderKLWan decoder, or a distilled FastWanDecoder (model_index.json names ["fastlight.decoder.fast",
"FastWanDecoder"]), as its vae/ (`fastlight run`'s export/pipeline_light); its "vae" record in
fastlight_export.json gives the parameter counts, checked against the decoder's manifest on a load.

The few-step grid is expressed with the scheduler's own config: `shift` and `shift_terminal` (a
shifted grid from 1000, stretched to end at the last level). What the scheduler is handed differs by
family: WanPipeline calls `set_timesteps(K)` (a linspace of the training table), HunyuanVideoPipeline
`set_timesteps(sigmas=np.linspace(1, 0, K + 1)[:-1])`. Uniform grids such as 1000/750/500/250 are
reproduced bit for bit with shift 1 in both; a grid the family's call cannot hit is refused.

A real (non-Shapes) student needs its source pipeline, found from the model folder or its chain of
fastlight.json "teacher" / "pruned_from" entries, or given with --source; the source must be of the
student's family and its transformer must share the student's interface (channels, text sizes, patch).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

from fastlight.data.latents import pipeline_text_len
from fastlight.decoder.fast import FastWanDecoder
from fastlight.diffusion.spec import SamplerSpec, choose_sampler
from fastlight.errors import InputError, MissingFileError
from fastlight.evaluate.pipelines import pipeline_for
from fastlight.export.common import check_out_dir, copy_meta_files, find_model_dir, link_or_copy
from fastlight.fileio import atomic_dir, atomic_write_json, read_json_object
from fastlight.models.denoiser import ModelError
from fastlight.models.hunyuan import DEFAULT_GUIDANCE
from fastlight.models.load import load_denoiser, resolve_model_path

GRID_TOL = 1e-6  # max |scheduler sigma - student level| accepted
CHAIN_KEYS = ("teacher", "pruned_from")  # fastlight.json entries that point at the model a student came from


@dataclass(frozen=True)
class Family:
    """What the export needs to know of a model family's stock pipelines."""

    transformer: str  # the diffusers transformer class
    pipeline_prefix: str  # the family's pipeline classes start with it
    components: tuple[str, ...]  # source pipeline entries linked into the export
    interface: tuple[str, ...]  # transformer config keys the student must share with the source's
    linspace_sigmas: bool  # the pipeline hands the scheduler sigmas = linspace(1, 0, K + 1)[:-1]


FAMILIES = {
    "wan": Family("WanTransformer3DModel", "Wan",
                  ("vae", "text_encoder", "tokenizer", "image_encoder", "image_processor"),
                  ("in_channels", "out_channels", "text_dim", "patch_size", "image_dim"), False),
    "hunyuan": Family("HunyuanVideoTransformer3DModel", "HunyuanVideo",
                      ("vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "image_processor"),
                      ("in_channels", "out_channels", "text_embed_dim", "pooled_projection_dim", "patch_size",
                       "patch_size_t", "image_condition_type", "guidance_embeds"), True),
}


# ---- scheduler --------------------------------------------------------------------------------
def scheduler_for(spec: SamplerSpec, family: str = "wan"):
    """A FlowMatchEulerDiscreteScheduler whose grid, as the family's pipeline sets it for
    num_inference_steps = spec.num_steps, is the student's levels (few-step, stochastic); for an
    Euler spec, the Euler scheduler with the model's shift."""
    if spec.kind == "euler":
        return FlowMatchEulerDiscreteScheduler(shift=spec.shift)
    linspace = FAMILIES[family].linspace_sigmas
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
        if pipeline_levels(_few_step_scheduler(math.exp(mid), s), k, linspace)[1] < s[1]:
            lo = mid
        else:
            hi = mid
    for shift in (1.0, math.exp(0.5 * (lo + hi))):  # shift exactly 1 when it fits (uniform grids: bit-exact)
        sched = _few_step_scheduler(shift, s)
        if max(abs(a - b) for a, b in zip(pipeline_levels(sched, k, linspace), s)) <= GRID_TOL:
            return sched
    given = ("linspace(1, 0, K + 1)[:-1] (what HunyuanVideoPipeline hands its scheduler)" if linspace
             else "K-step scheduler grid (what WanPipeline asks its scheduler for)")
    raise ModelError(f"the student's timesteps {'/'.join(f'{1000 * x:g}' for x in s)} are not a shifted, stretched "
                     f"{given}; the stock pipeline cannot run them (distil with a grid such as 1000/750/500/250)")


def _few_step_scheduler(shift: float, s_list: list[float]):
    kw = {"shift_terminal": s_list[-1]} if len(s_list) > 1 else {}
    return FlowMatchEulerDiscreteScheduler(shift=shift, stochastic_sampling=True, **kw)


def pipeline_levels(sched, k: int, linspace_sigmas: bool = False) -> list[float]:
    """The k levels the scheduler runs at when a pipeline asks for k steps (no terminal 0): WanPipeline
    calls set_timesteps(k), HunyuanVideoPipeline set_timesteps(sigmas=linspace(1, 0, k + 1)[:-1])."""
    if linspace_sigmas:
        sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, k + 1)[:-1])
    else:
        sched.set_timesteps(k)
    return sched.sigmas[:-1].tolist()


# ---- the source pipeline (VAE, text encoders, tokenizers) --------------------------------------
def find_source_pipeline(model_dir: Path, meta: dict, source: str | None = None) -> Path | None:
    """The diffusers pipeline folder the student came from: `source` if given, the folder around
    model_dir when it is a pipeline's transformer/, else the first pipeline up the chain of
    fastlight.json "teacher" (or, for a pruned model, "pruned_from") entries. None when there is none."""
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
        parent = next((cur_meta[k] for k in CHAIN_KEYS if cur_meta.get(k)), None)
        if not parent or parent in seen:
            return None
        seen.add(parent)
        cur = resolve_model_path(str(parent))
        if (cur / "model" / "config.json").is_file():
            cur = cur / "model"
        f = cur / "fastlight.json"
        cur_meta = read_json_object(f, ModelError, "re-save that model") if f.is_file() else {}
    return None


def check_source(source: Path, index: dict, den, family: str) -> None:
    """One line if the source pipeline is of another family, or its transformer's interface (channels,
    text sizes, patch) differs from the student's: its VAE / text encoders would not fit the student."""
    fam = FAMILIES[family]
    cls = str(index.get("_class_name", ""))
    if not cls.startswith(fam.pipeline_prefix):
        raise ModelError(f"source pipeline {source} holds a {cls or 'pipeline of unknown class'} but the student is "
                         f"a {fam.transformer}; pass --source with the {fam.pipeline_prefix} pipeline it was "
                         "distilled from")
    cfg_file = source / "transformer" / "config.json"
    if not cfg_file.is_file():
        return  # nothing to compare against (a source without its own transformer)
    theirs = read_json_object(cfg_file, ModelError, "pass a complete diffusers pipeline as --source")
    if theirs.get("_class_name") != fam.transformer:
        raise ModelError(f"source pipeline {source}: its transformer is a {theirs.get('_class_name')}, the student a "
                         f"{fam.transformer}; pass --source with the pipeline the student was distilled from")
    ours = dict(den.model.config)
    bad = [k for k in fam.interface if k in theirs and _plain(theirs[k]) != _plain(ours.get(k))]
    if bad:
        diff = ", ".join(f"{k} {_plain(ours.get(k))} vs {_plain(theirs[k])}" for k in bad)
        raise ModelError(f"source pipeline {source} does not fit the student: transformer config {diff} (student vs "
                         "source); pass --source with the pipeline the student was distilled from")


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def model_index(source: Path | None, den, family: str) -> tuple[dict, list[str]]:
    """model_index.json for the export and the component folders to link from the source."""
    fam = FAMILIES[family]
    if source is None:
        index = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__,
                 "boundary_ratio": None, "expand_timesteps": False,
                 "text_encoder": [None, None], "tokenizer": [None, None], "transformer_2": [None, None],
                 "vae": [None, None]}
        linked = []
    else:
        index = read_json_object(source / "model_index.json", ModelError, "pass a diffusers pipeline as --source")
        check_source(source, index, den, family)
        linked = [c for c in fam.components
                  if isinstance(index.get(c), list) and index[c][0] is not None and (source / c).is_dir()]
        if "transformer_2" in index:  # one student replaces the Wan 2.2 high/low-noise pair
            index["transformer_2"], index["boundary_ratio"] = [None, None], None
    index["transformer"] = ["diffusers", fam.transformer]
    index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    return index, linked


# ---- the command ----------------------------------------------------------------------------------
def export_diffusers(run: str, out: str, overwrite: bool = False, source: str | None = None) -> Path:
    """Write the student in RUN as a diffusers pipeline folder at `out` (atomically)."""
    model_dir = find_model_dir(run)
    den = load_denoiser(model_dir)
    if den.family not in FAMILIES:
        raise ModelError(f"{run} is a {type(den.model).__name__}; `fastlight export` supports "
                         f"{' and '.join(f.transformer for f in FAMILIES.values())} students")
    choice = choose_sampler(model_dir)
    print(choice.line)
    spec = choice.spec
    scheduler = scheduler_for(spec, den.family)
    src = find_source_pipeline(model_dir, den.meta, source)
    world = pipeline_for(den)  # a plug-in world (the Shapes models): no VAE, no text encoder to link
    if src is None and world is None:
        raise InputError(f"{run}: found no source pipeline for this {type(den.model).__name__} (none around its "
                         "folder or up its fastlight.json teacher chain); pass --source PIPELINE, the diffusers "
                         "pipeline folder it was distilled from (its VAE and text encoders go into the export)")
    index, linked = model_index(src, den, den.family)
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


def call_args(spec: SamplerSpec, den, index: dict, world) -> dict:
    """How to call the stock pipeline on the export so that it runs the student's own sampler."""
    stochastic = ("torch.manual_seed(seed) first: the few-step scheduler re-noises from the global RNG"
                  if spec.kind == "few_step" else None)
    if den.family == "hunyuan":
        call = {"num_inference_steps": spec.num_steps, "true_cfg_scale": spec.guidance}
        if den.model.config.guidance_embeds:  # embedded (distilled) guidance: what fastlight's sampler passes too
            call["guidance_scale"] = DEFAULT_GUIDANCE
        call["negative_prompt"] = ("irrelevant: true_cfg_scale 1 runs no unconditional pass" if spec.guidance == 1
                                   else "needed for true CFG (negative_prompt= or negative_prompt_embeds=)")
        if spec.kind == "euler":
            call["grid"] = ("HunyuanVideoPipeline shifts linspace(1, 0, N + 1)[:-1], not fastlight's Euler grid "
                            "(shifted_grid): close, not equal")
    else:
        call = {"num_inference_steps": spec.num_steps, "guidance_scale": spec.guidance}
        if world is not None:
            call["negative_prompt_embeds"] = "transformer/null_text.safetensors (null_text), padded with zero tokens"
        else:
            call["negative_prompt"] = ("irrelevant: guidance_scale 1 runs no unconditional pass" if spec.guidance == 1
                                       else '"" (what fastlight\'s null text is, encoded by the pipeline)')
        if index.get("expand_timesteps") and world is None:
            call["image_to_video"] = ("WanImageToVideoPipeline.from_pretrained(DIR)(image=..., ...): the first "
                                      "frame's latent is kept clean with timestep 0 on its tokens (Wan 2.2 TI2V); "
                                      "WanPipeline runs text-to-video")
    if stochastic:
        call["seed"] = stochastic
    return call


def export_info(run, model_dir: Path, src: Path | None, linked: list[str], spec: SamplerSpec, den, index: dict) -> dict:
    """What the export holds and how to call the pipeline (written as fastlight_export.json)."""
    world = pipeline_for(den)
    info = {"format": "diffusers", "run": str(run), "model": str(model_dir), "source_pipeline": str(src) if src else None,
            "linked": linked, "pipeline": index["_class_name"], "sampler": spec.to_json(),
            "call": call_args(spec, den, index, world), "params": sum(p.numel() for p in den.model.parameters())}
    text_len = pipeline_text_len(src) if src is not None and "tokenizer" in linked else None
    if text_len is not None:  # the linked tokenizer/ carries the source's own text length: call it with that
        info["call"]["max_sequence_length"] = text_len
    if world is not None:  # a plug-in world (e.g. Shapes): its latent layout, and what the stock pipelines cannot do
        info["latent_shape"] = list(world.latent_shape(den))
        info["ti2v"] = ("the stock WanPipeline runs text-to-video; a pixel-space TI2V model (clean first frame, "
                        "timestep 0 on its tokens) cannot be expressed by the stock pipelines "
                        "(WanImageToVideoPipeline needs a VAE and assumes a 2x2 spatial patch): use "
                        "`fastlight sample --model DIR` for that")
    return info


# ---- the light-decoder variant ---------------------------------------------------------------------
LIGHT_VAE_CLASS = "AutoencoderKLWan"
FAST_VAE_CLASS = "FastWanDecoder"
FAST_VAE_ENTRY = ["fastlight.decoder.fast", FAST_VAE_CLASS]  # model_index.json's vae entry for a FastWanDecoder


def export_light_decoder(pipeline: str | Path, decoder: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """The exported student pipeline `pipeline` again at `out` with the light decoder `decoder` (a stock
    AutoencoderKLWan folder with a smaller decoder_base_dim + manifest.json, e.g. a run's 5_decoder/distill/model,
    or a FastWanDecoder folder + manifest.json: model_index.json then names ["fastlight.decoder.fast",
    "FastWanDecoder"], which the stock WanPipeline.from_pretrained loads once fastlight has imported its registered
    pipeline components, `fastlight.models.load.import_pipeline_components`) as its `vae`: every other entry
    hard-linked, the VAE copied, loaded back with its class and its parameter counts checked against its
    manifest; fastlight_export.json gains a "vae" record. Atomic."""
    pipeline, decoder = Path(pipeline), Path(decoder)
    if not (pipeline / "model_index.json").is_file():
        raise MissingFileError(f"{pipeline} is not an exported pipeline folder (no model_index.json); export the "
                               "student first (`fastlight export RUN --format diffusers`)")
    cfg = read_json_object(decoder / "config.json", ModelError, "re-run the decoder stage") \
        if (decoder / "config.json").is_file() else {}
    kind = cfg.get("_class_name")
    if kind not in (LIGHT_VAE_CLASS, FAST_VAE_CLASS) or not (decoder / "manifest.json").is_file():
        raise ModelError(f"{decoder} is not a light {LIGHT_VAE_CLASS} or {FAST_VAE_CLASS} decoder folder (config.json "
                         f"naming one and manifest.json); pass a `fastlight distill-decoder` output's model/")
    manifest = read_json_object(decoder / "manifest.json", ModelError, "re-run the decoder stage")
    index = read_json_object(pipeline / "model_index.json", ModelError, "re-export the student")
    out_dir = check_out_dir(out, overwrite, (pipeline, decoder))
    with atomic_dir(out_dir) as tmp:
        for entry in sorted(pipeline.iterdir()):
            rewritten = kind == FAST_VAE_CLASS and entry.name == "model_index.json"  # written below, vae entry changed
            if entry.name in ("vae", "fastlight_export.json") or rewritten:
                continue
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name, copy_function=link_or_copy)
            else:
                link_or_copy(str(entry), str(tmp / entry.name))
        shutil.copytree(decoder, tmp / "vae", ignore=shutil.ignore_patterns("checkpoints"))
        if kind == FAST_VAE_CLASS:
            atomic_write_json(tmp / "model_index.json", {**index, "vae": FAST_VAE_ENTRY})
        record = _light_vae_record(tmp / "vae", kind, manifest, decoder)
        info_file = pipeline / "fastlight_export.json"
        info = read_json_object(info_file, ModelError, "re-export the student") if info_file.is_file() else {}
        info["vae"] = {"light_decoder": str(decoder), "class": kind, **record, "full_pipeline": str(pipeline)}
        atomic_write_json(tmp / "fastlight_export.json", info)
    return out_dir


def _light_vae_record(folder: Path, kind: str, manifest: dict, decoder: Path) -> dict:
    """The light VAE loaded back with its own class; its parameter counts (checked against the manifest) and
    layout for fastlight_export.json's "vae" record."""
    if kind == FAST_VAE_CLASS:
        vae = FastWanDecoder.from_pretrained(folder, torch_dtype=torch.float32)
        n = sum(p.numel() for p in vae.parameters())
        counts = {"params": n, "decoder_params": n}
    else:
        vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=torch.float32)
        counts = {"params": sum(p.numel() for p in vae.parameters()),
                  "decoder_params": sum(p.numel() for p in vae.decoder.parameters())}
    for key, n in counts.items():
        if key in manifest and manifest[key] != n:
            raise ModelError(f"{decoder}: the {kind} class loads {n:,} {key.replace('_', ' ')}, its manifest says "
                             f"{manifest[key]:,}; re-run the decoder stage")
    record = {**counts, "decoder_params_full": manifest.get("teacher_decoder_params")}
    if kind == FAST_VAE_CLASS:
        return {**record, "width": vae.config.width, "encoder": "none", "model_index_entry": FAST_VAE_ENTRY,
                "use": manifest.get("use", "decode only: a FastWanDecoder has no encoder; encode with the teacher VAE"),
                "load": "import fastlight.models.load; fastlight.models.load.import_pipeline_components(DIR) (or "
                        "import fastlight.decoder.fast) before WanPipeline.from_pretrained(DIR)"}
    pruning = manifest.get("pruning", manifest)
    record.update(decoder_base_dim=vae.config.decoder_base_dim, num_res_blocks=vae.config.num_res_blocks,
                  head=pruning.get("head", "full"), encoder=pruning.get("encoder", "teacher"))
    if "use" in pruning:  # a decode-only light VAE (its encoder is a placeholder): say so where users look
        record["use"] = pruning["use"]
    return record
