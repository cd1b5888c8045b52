"""Evaluation on a real diffusers pipeline (Wan 2.1 T2V, Wan 2.2 TI2V, HunyuanVideo T2V): the teacher
and its students sampled on the same prompts and noise, decoded with the pipeline's VAE, written as MP4s
and scored.

    res = evaluate_on_pipeline("Wan2.1-T2V-1.3B-Diffusers",
                               {"teacher": ("Wan2.1-T2V-1.3B-Diffusers/transformer", SamplerSpec.euler(50, 5.0, 3.0)),
                                "student": ("runs/wan/model", SamplerSpec.load("runs/wan/model"))},
                               prompts, "runs/wan/eval", num_frames=81, height=480, width=832)

The first model is the reference (the teacher). Per model (`models` maps a name to (a model folder or a
`Denoiser`, its `SamplerSpec`)):
  * prompts encoded with the pipeline's own text encoder(s) (as `fastlight synthesize` and the stock
    pipeline do; HunyuanVideo: Llama + its text mask, CLIP pooled); the null condition for CFG: the
    model folder's null_text.safetensors, else the pipeline's negative prompt "" (HunyuanVideo: its text
    and pooled embedding, the denoiser's null_state) (a Denoiser object keeps its own);
  * sampled with `fastlight.diffusion.sampling.sample` and the model's SamplerSpec from prompt i's
    noise of the `test` stream (the same for every model); TI2V: `images` are the first frames,
    VAE-encoded and kept clean as synthesize does; HunyuanVideo: a guidance-distilled transformer gets
    the stock embedded guidance (6, Cond.extra "guidance" x 1000, as synthesize; `embedded_guidance`
    in eval.json), and Euler steps through the stock pipeline's grid (synthesize's, not shifted_grid);
  * decoded with the pipeline's VAE as the stock pipeline decodes, written to
    out_dir/videos/NAME/NNN.mp4 (Wan 16 fps, WanPipeline's export rate; HunyuanVideo 24 fps, its
    reference sampler's);
  * scored, each with a 95% percentile-bootstrap interval over the prompts (`fastlight.evaluate.stats`):
    the weight-free VBench-style dimensions (`fastlight.evaluate.vbench`, each labelled with its kind:
    `proxy` or `exact`; temporal flickering with the static filter off, so every video is scored;
    aesthetic quality, n/a without weights, is left out) and the motion magnitude (mean Farneback flow
    magnitude between consecutive frames, `fastlight.evaluate.motion`).
Per student against the reference (paired: the same prompts and noise, resampled together):
  * `motion_ratio` = student motion / reference motion (ratio of the means; < 1: the student moves
    less; few-step students are reported to make slow motion);
  * `frechet_distance` in the teacher DiT's own feature space (the pipeline's transformer: the hidden
    state after its middle block (HunyuanVideo: of its double- then single-stream blocks; the video
    tokens), mean-pooled over tokens, of the sample's VAE latent (what the VAE decodes into the video)
    noised to s = 0.5 with the same noise for every model; projected onto 32 seeded random directions,
    Ledoit-Wolf covariances: `fastlight.evaluate.frechet`), squared;
  * `proxy_differences` = student - reference for each dimension.
Decoder choice (`decoders`, {row name: (model name, VAE folder)}): an extra row that decodes that model's
latents with another VAE (e.g. a pruned, distilled light decoder): the same samples, so its Frechet distance
(latent space) is the model's; motion, proxies and videos are its own, and `decoder_psnr_db` is the PSNR of
its frames against the pipeline VAE's frames of the same latents, paired per prompt, with an interval.
The official VBench and FVD backends are not run here; `backends` says so and how to run them.
Memory: the latents of every model are kept (small); the frames of one decoded batch at a time (with an
oracle, every row's uint8 frames too, until that row is scored).

**A world's oracle** (`oracle`, from `pipeline_oracle(pipeline, ...)`): a plug-in that knows what the
pipeline's videos should show (the embedded Shapes world) supplies the evaluation cases itself (prompts and
first frames: `oracle.cases(n, folder)`) and judges every row's decoded videos (`oracle.score(videos)`: a
dict with at least `score` and its 95% `interval`), and the paired difference of each row against the
reference on the same cases and noise (`oracle.paired(row, reference)`: at least `score`, an interval);
eval.json carries them under `oracle` ({name, ..., models, pairs}). Plug-ins register an oracle factory
`factory(pipeline, *, num_frames, height, width, seed, split) -> oracle or None` (None: not its pipeline) in the
entry-point group `fastlight.pipeline_oracles`; a registered pipeline component class (e.g. a plug-in text
encoder the folder's model_index.json names) may also name one in its `fastlight_oracle` attribute
("module:attr"), so a folder finds its oracle before the plug-in's metadata is reinstalled. No oracle: the
evaluation is unchanged.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from fastlight.data.latents import _Vae, pipeline_text_len
from fastlight.data.synthesize import (FAMILY_DEFAULTS, HUNYUAN_CLASS, WAN_CLASSES, _embedded_guidance,
                                       _latent_shape, _patch, _positive_int, check_pipeline, pipeline_family,
                                       vae_geometry)
from fastlight.data.video import write_video
from fastlight.diffusion.spec import SamplerSpec, model_folder
from fastlight.errors import DataError, InputError, ModelError, check_dir_creatable, make_dir
from fastlight.evaluate.frechet import PROJECTION_DIM, frechet_interval
from fastlight.evaluate.motion import motion_magnitude
from fastlight.evaluate.real_samples import (check_text_width, decode_latents, encode_prompts, first_frames,
                                             hunyuan_levels, load_model, sample_model, teacher_features)
from fastlight.evaluate.stats import bootstrap_interval, mean_of, paired_difference, ratio_of_sums
from fastlight.evaluate.timing import resolve_device
from fastlight.evaluate.vbench import score_videos
from fastlight.evaluate.vbench.dimensions import DIMENSIONS, dimension_kind
from fastlight.fileio import atomic_write_json, read_json_object
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import ADAPTERS, PIPELINE_COMPONENTS, import_pipeline_components, load_denoiser
from fastlight.plugins import component, registered

EVAL_FILE = "eval.json"
ORACLE_GROUP = "fastlight.pipeline_oracles"  # entry points: name -> oracle factory (module doc)
ORACLE_ATTR = "fastlight_oracle"  # a pipeline component class's "module:attr" of its oracle factory
ORACLE_CASES = "oracle_cases"  # out_dir/oracle_cases/: the first frames of an oracle's cases
VIDEO_DIR = "videos"
FPS = 16  # WanPipeline's videos are exported at 16 fps
EVAL_PIPELINES = (*WAN_CLASSES, HUNYUAN_CLASS)
FAMILY_FPS = {"wan": FPS, "hunyuan": 24}  # HunyuanVideo's reference sample_video.py saves at 24 fps
# the weight-free dimensions a video gets (aesthetic quality is n/a without weights); + the I2V ones with images
T2V_DIMS = ("subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
            "dynamic_degree", "imaging_quality")
I2V_DIMS = ("i2v_subject", "i2v_background")


# ----------------------------------------------------------------------------- inputs
def check_eval_pipeline(folder: Path) -> dict:
    """A Wan or HunyuanVideo diffusers pipeline folder -> its model_index.json (synthesize's checks:
    one-line errors otherwise)."""
    index_file = folder / "model_index.json"
    if folder.is_dir() and index_file.is_file():
        cls = read_json_object(index_file, ModelError, "re-download the pipeline").get("_class_name")
        if cls not in EVAL_PIPELINES:
            raise ModelError(f"evaluate --pipeline supports Wan and HunyuanVideo pipelines; {folder} is a {cls}: "
                             "score its videos with `fastlight vbench`")
    return check_pipeline(folder)


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, (str, Path)) or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompts must be a list of strings (read a prompts file with "
                         "fastlight.data.synthesize.read_prompts)")
    prompts = list(prompts)
    if len(prompts) < 2:
        raise InputError(f"evaluation needs >= 2 prompts for its bootstrap intervals, got {len(prompts)}; "
                         "add prompts (tens give useful intervals)")
    return prompts


def _check_models(models: Mapping) -> dict:
    if not isinstance(models, Mapping) or not models:
        raise InputError("models must map a name to (model folder or Denoiser, SamplerSpec); the first is the "
                         "reference (teacher)")
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"model names must be non-empty strings, got {name!r}")
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], SamplerSpec)):
            raise InputError(f"model {name!r}: give (model folder or Denoiser, SamplerSpec), got {entry!r}")
        model = entry[0]
        if not isinstance(model, (Denoiser, str, Path)):
            raise InputError(f"model {name!r}: {model!r} is neither a model folder nor a Denoiser")
        if not isinstance(model, Denoiser) and not Path(model).is_dir():
            raise ModelError(f"model {name!r}: folder {model} does not exist; pass a model folder (config.json "
                             "and safetensors, a run's model/, or a pipeline's transformer/)")
    if len(models) < 2:
        raise InputError("models needs the reference (teacher) and at least one model to compare with it")
    return dict(models)


def _check_decoders(decoders, models: Mapping) -> dict[str, tuple[str, Path]]:
    """{row: (model name, VAE folder)}: a new row name, a model of `models`, a VAE folder with config.json."""
    if decoders is None:
        return {}
    if not isinstance(decoders, Mapping):
        raise InputError("decoders must map a row name to (model name, VAE folder)")
    out = {}
    for row, entry in decoders.items():
        if not isinstance(row, str) or not row.strip() or row in models:
            raise InputError(f"decoder row {row!r}: give a non-empty name that is not one of the models "
                             f"({', '.join(models)})")
        if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] in models):
            raise InputError(f"decoder row {row!r}: give (model name, VAE folder) with a model of {', '.join(models)}, "
                             f"got {entry!r}")
        folder = Path(entry[1])
        if not (folder / "config.json").is_file():
            raise ModelError(f"decoder row {row!r}: {folder} is not a diffusers VAE folder (no config.json); pass a "
                             "folder saved with save_pretrained (e.g. a run's 5_decoder/distill/model)")
        out[row] = (entry[0], folder)
    return out


def _model_family(model) -> str | None:
    """A model entry's family ("wan", "hunyuan"): a Denoiser's own, a folder's from its config.json class;
    None where the folder cannot tell (loading it later says why)."""
    if isinstance(model, Denoiser):
        return model.family
    folder = model_folder(model) or Path(model)
    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        return None
    adapter = ADAPTERS.get(read_json_object(cfg_file, ModelError, "re-export the model").get("_class_name"))
    return None if adapter is None else adapter.family


def _check_families(models: Mapping, family: str, pipeline: Path) -> None:
    """Every model must be of the pipeline's family: its text encoder, VAE and teacher feed them."""
    for name, (model, _) in models.items():
        own = _model_family(model)
        if own is not None and own != family:
            raise ModelError(f"model {name!r} is a {own} model but {pipeline} is a {family} pipeline; evaluate a "
                             "model of the pipeline's family against it")


def _check_images(images, index: dict, pipeline: Path, num_prompts: int) -> list[Path] | None:
    if images is None:
        return None
    if not index.get("expand_timesteps"):
        raise InputError(f"first-frame images need a TI2V pipeline (Wan 2.2 TI2V: expand_timesteps true in its "
                         f"model_index.json); {pipeline} is text-to-video: drop the images")
    files = [Path(f) for f in images]
    if len(files) != num_prompts:
        raise DataError(f"{len(files)} first-frame image(s) for {num_prompts} prompts: give one image per prompt")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"first-frame image {missing[0]} does not exist; give one image file per prompt")
    return files


def _slugs(names: Sequence[str]) -> dict[str, str]:
    """A distinct folder name for each model name (unsafe characters replaced, clashes numbered)."""
    out, used = {}, set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
        slug, k = base, 1
        while slug in used:
            k += 1
            slug = f"{base}-{k}"
        used.add(slug)
        out[name] = slug
    return out


# ----------------------------------------------------------------------------- a world's oracle
def oracle_factories(pipeline: Path) -> list[str]:
    """The oracle factories ("module:attr") that may judge `pipeline`'s videos: those registered in
    ORACLE_GROUP, then those its registered pipeline components name in `fastlight_oracle`."""
    refs = list(dict.fromkeys(registered(ORACLE_GROUP).values()))
    for name in import_pipeline_components(pipeline):
        ref = getattr(component(PIPELINE_COMPONENTS, name), ORACLE_ATTR, None)
        if isinstance(ref, str) and ref not in refs:
            refs.append(ref)
    return refs


def pipeline_oracle(pipeline, *, num_frames: int, height: int, width: int, seed: int = 0, split: str = "test"):
    """The oracle of the world `pipeline` generates (the first factory that claims the folder), or None.
    `split`: its held-out cases, `test` (what a result is reported on) or `validation` (what a choice, e.g.
    a guidance scale or a checkpoint, is made on)."""
    pipeline = Path(pipeline)
    for ref in oracle_factories(pipeline):
        oracle = component(ORACLE_GROUP, ref)(pipeline, num_frames=num_frames, height=height, width=width,
                                              seed=seed, split=split)
        if oracle is not None:
            return oracle
    return None


def _oracle_section(oracle, per: dict, reference: str, progress: bool) -> dict:
    """eval.json's `oracle`: every row's score (the frames dropped once scored) and each row - reference."""
    # a bar per row: the oracle tracks every object of every video (~25 s a row at 320 Shapes cases on 2 cores)
    rows = tqdm(per.items(), total=len(per), desc="evaluate: oracle", unit="row", disable=not progress)
    scored = {name: oracle.score(rec.pop("frames")) for name, rec in rows}
    return {**oracle.describe(), "models": scored,
            "pairs": {name: oracle.paired(s, scored[reference]) for name, s in scored.items() if name != reference}}


# ----------------------------------------------------------------------------- scores
def _model_scores(spec: SamplerSpec, rec: dict, out_dir: Path) -> dict:
    return {
        "sampler": spec.to_json(),
        "proxies": {d: {**bootstrap_interval(mean_of("x"), {"x": v}).to_json(), "kind": dimension_kind(d, False)}
                    for d, v in rec["proxies"].items()},
        "motion": {**bootstrap_interval(mean_of("x"), {"x": rec["motion"]}).to_json(),
                   "unit": "mean optical-flow magnitude, pixels per frame"},
        "videos": [p.relative_to(out_dir).as_posix() for p in rec["videos"]],
    }


def _motion_ratio(student: list[float], reference: list[float]) -> dict:
    if not np.any(np.asarray(reference) > 0):
        return {"estimate": None, "low": None, "high": None,
                "note": "undefined: the reference's videos do not move (motion 0)"}
    iv = bootstrap_interval(ratio_of_sums("s", "r"), {"s": student, "r": reference})
    return {**iv.to_json(), "definition": "mean student motion / mean reference motion, paired per prompt"}


def _decoder_scores(rec: dict, model: str, folder: Path) -> dict:
    """What a decoder row adds to its model scores: its VAE, the model it decodes, its PSNR to the full decoder."""
    return {"decoder": str(folder), "latents_of": model,
            "decoder_psnr_db": {**bootstrap_interval(mean_of("x"), {"x": rec["psnr"]}).to_json(),
                                "definition": "PSNR (dB, uint8 frames) of this decoder's video against the pipeline "
                                              "VAE's video of the same latents, mean over prompts"}}


def _pair_scores(ref: dict, other: dict) -> dict:
    return {
        "frechet_distance": {**frechet_interval(ref["features"], other["features"]).to_json(),
                             "space": f"the teacher DiT's mid-block hidden state, {PROJECTION_DIM} random directions, "
                                      "Ledoit-Wolf covariances (squared distance)"},
        "motion_ratio": _motion_ratio(other["motion"], ref["motion"]),
        "proxy_differences": {
            d: {**paired_difference(mean_of("x"), {"x": other["proxies"][d]}, {"x": v}).to_json(),
                "kind": dimension_kind(d, False)}
            for d, v in ref["proxies"].items()},
    }


def backends(out_dir: Path, reference: str, slugs: Mapping[str, str], videos: bool = True) -> dict[str, str]:
    """What the official backends would need; this evaluation never runs them."""
    ref = out_dir / VIDEO_DIR / slugs[reference]
    other = out_dir / VIDEO_DIR / next(s for n, s in slugs.items() if n != reference)
    first = "" if videos else "write the videos (videos=True, i.e. without --no-videos), then "
    if importlib.util.find_spec("vbench") is not None:
        vb = (f"not run here: the vbench package is installed (available) but this evaluation does not run it; "
              f"{first}run `fastlight vbench {other} --backend vbench` on each model's videos")
    else:
        vb = "not run here: vbench is not installed (pip install vbench, then `fastlight vbench DIR --backend vbench`)"
    fvd = (f"not run here: FVD needs the StyleGAN-V I3D detector file; {first}run `fastlight fvd {ref} {other} "
           "--detector i3d_torchscript.pt`")
    return {"vbench_official": vb, "fvd": fvd}


# ----------------------------------------------------------------------------- the entry point
def evaluate_on_pipeline(pipeline, models, prompts, out_dir, *, num_frames, height, width, seed=0, images=None,
                         videos=True, progress=True, device=None, max_text_len=None, batch_size=1,
                         decoders=None, oracle=None) -> dict:
    """Sample, decode, write and score every model of `models` on `prompts` with the `pipeline` (the
    teacher's diffusers folder: its text encoder, VAE and transformer (the feature space)); the first
    model is the reference. Writes out_dir/eval.json (atomically) and, with `videos`, the MP4s; returns
    the eval.json document (the module doc). Every input is checked before any work (one-line errors).
    `device`: default CUDA when available; `max_text_len`: the prompt tokens kept (default the text length
    the pipeline folder records, `latents.pipeline_text_len`, else the stock pipeline's: Wan 512, HunyuanVideo
    256); `batch_size`: prompts sampled, decoded and featurised at a time;
    `decoders`: extra rows {name: (model name, VAE folder)} decoding a model's latents with another VAE;
    `oracle`: a world's oracle (module doc) that judges every row's videos; `prompts` / `images` must then be
    its cases (`evaluate_oracle_cases` asks it for them)."""
    pipeline, out_dir = Path(pipeline), Path(out_dir)
    index = check_eval_pipeline(pipeline)
    family = pipeline_family(index)
    if max_text_len is None:
        max_text_len = pipeline_text_len(pipeline) or FAMILY_DEFAULTS[family]["max_text_len"]
    for value, name in ((num_frames, "num_frames"), (height, "height"), (width, "width"),
                        (max_text_len, "max_text_len"), (batch_size, "batch_size")):
        _positive_int(value, name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    prompts = _check_prompts(prompts)
    models = _check_models(models)
    extra = _check_decoders(decoders, models)
    _check_families(models, family, pipeline)
    image_files = _check_images(images, index, pipeline, len(prompts))
    _, temporal, spatial = vae_geometry(pipeline / "vae")
    tcfg = read_json_object(pipeline / "transformer" / "config.json", ModelError, "re-download the pipeline")
    shape = _latent_shape(tcfg["in_channels"], _patch(tcfg), temporal, spatial, num_frames, height, width)
    embedded = _embedded_guidance(family, tcfg, None, None)  # the stock 6 where the transformer embeds it
    check_dir_creatable(out_dir, "--out")
    device = resolve_device(device)

    texts = encode_prompts(pipeline, prompts, device, max_text_len, family, embedded)
    first_latents, first_images = first_frames(pipeline / "vae", image_files, height, width, device)
    grid = (lambda spec: hunyuan_levels(pipeline, spec)) if family == "hunyuan" else (lambda spec: None)
    latents = _sample_all(models, texts, shape, seed, device, first_latents, batch_size, progress, grid)
    dims = T2V_DIMS + (I2V_DIMS if first_images is not None else ())
    make_dir(out_dir, "--out")
    slugs = _slugs([*models, *extra])
    per = _score_all(pipeline, latents, texts, seed, device, first_images, dims, batch_size,
                     {name: out_dir / VIDEO_DIR / slug for name, slug in slugs.items()} if videos else None, progress,
                     FAMILY_FPS[family], extra, keep_frames=oracle is not None)
    reference = next(iter(models))
    specs = {**{n: m[1] for n, m in models.items()}, **{row: models[m][1] for row, (m, _) in extra.items()}}
    scores = {name: _model_scores(specs[name], p, out_dir) for name, p in per.items()}
    for row, (model, folder) in extra.items():
        scores[row].update(_decoder_scores(per[row], model, folder))
    result = {
        "pipeline": str(pipeline), "num_prompts": len(prompts), "num_frames": num_frames, "height": height,
        "width": width, "seed": seed, "reference": reference,
        "models": scores,
        "pairs": {name: _pair_scores(per[reference], p) for name, p in per.items() if name != reference},
        "backends": backends(out_dir, reference, slugs, videos),
        "dimensions": {d: DIMENSIONS[d]["doc"] for d in dims},
    }
    if family == "hunyuan":  # (Wan's eval.json keeps its keys)
        result.update({"family": family, "embedded_guidance": embedded})
    if oracle is not None:
        result["oracle"] = _oracle_section(oracle, per, reference, progress)
    atomic_write_json(out_dir / EVAL_FILE, result)
    return result


def evaluate_oracle_cases(pipeline, models, oracle, num_cases: int, out_dir, **kw) -> dict:
    """`evaluate_on_pipeline` on the oracle's first `num_cases` cases (their prompts, and their first frames
    written to out_dir/oracle_cases/), every row judged by the oracle."""
    out_dir = Path(out_dir)
    _positive_int(num_cases, "num_cases")
    check_dir_creatable(out_dir, "--out")
    prompts, images = oracle.cases(num_cases, out_dir / ORACLE_CASES)
    return evaluate_on_pipeline(pipeline, models, prompts, out_dir, images=images, oracle=oracle, **kw)


def _sample_all(models: dict, texts, shape, seed: int, device, first_latents, batch_size: int,
                progress: bool, grid) -> dict[str, list[torch.Tensor]]:
    """{name: one latent per prompt}, one model on the device at a time; `grid(spec)`: the levels an Euler
    spec steps through where they are not its own (HunyuanVideo), else None."""
    latents = {}
    bar = tqdm(total=len(models) * texts.embeds.shape[0], desc="evaluate: sample", unit="video",
               disable=not progress)
    for name, (model, spec) in models.items():
        den = load_model(model, texts.null_state, device)
        check_text_width(den, texts.width, name)
        bar.set_postfix_str(f"{name}: {spec.describe()}")
        latents[name] = sample_model(den, spec, texts, shape, seed, device, first_latents, bar, batch_size,
                                     grid(spec))
        del den
    bar.close()
    return latents


def _score_all(pipeline: Path, latents: dict, texts, seed: int, device, first_images, dims, batch_size: int,
               video_dirs: dict[str, Path] | None, progress: bool, fps: int = FPS,
               extra: Mapping[str, tuple[str, Path]] | None = None, keep_frames: bool = False) -> dict[str, dict]:
    """{name: {features, motion, proxies, videos}} (decoder rows of `extra` also `psnr`): each batch of samples
    is decoded (by the pipeline's VAE, and by each decoder row's VAE), scored, written (with `video_dirs`) and
    dropped, so only one batch of frames is in memory; `keep_frames`: each row's uint8 frames are kept under
    `frames` (for an oracle)."""
    extra = dict(extra or {})
    vae = _Vae(pipeline / "vae", device, torch.float32)
    light = {row: _Vae(folder, device, torch.float32) for row, (_, folder) in extra.items()}
    teacher = load_denoiser(pipeline / "transformer", device).eval()
    per = {}
    bar = tqdm(total=sum(len(z) for z in latents.values()) + sum(len(latents[m]) for m, _ in extra.values()),
               desc="evaluate: decode + score", unit="video", disable=not progress)
    for name, zs in latents.items():
        rows = [name, *(row for row, (m, _) in extra.items() if m == name)]
        features = teacher_features(teacher, zs, texts, seed, batch_size=batch_size)
        recs = {r: {"features": features, "motion": [], "proxies": {d: [] for d in dims}, "videos": [], "psnr": [],
                    **({"frames": []} if keep_frames else {})} for r in rows}
        for start in range(0, len(zs), batch_size):
            full = decode_latents(vae, zs[start:start + batch_size], batch_size)
            for row in rows:
                decoded = full if row == name else decode_latents(light[row], zs[start:start + batch_size],
                                                                  batch_size)
                for i, (frames, ref) in enumerate(zip(decoded, full), start):
                    rec = recs[row]
                    _score_video(rec, frames, None if first_images is None else first_images[i], dims, fps)
                    if row != name:
                        rec["psnr"].append(frame_psnr(frames, ref))
                    if keep_frames:
                        rec["frames"].append(frames)
                    if video_dirs is not None:
                        rec["videos"].append(_write_video(video_dirs[row], i, frames, fps))
                    bar.update(1)
        per.update(recs)
    bar.close()
    return per


def frame_psnr(frames: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of uint8 frames against reference frames of the same shape (100 where they are equal)."""
    if frames.shape != ref.shape:
        raise ModelError(f"the decoder row's video has shape {frames.shape}, the pipeline VAE's {ref.shape}: the "
                         "light decoder must decode to the same frames (same VAE layout)")
    mse = float(np.mean((frames.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _score_video(rec: dict, frames: np.ndarray, image, dims, fps: int = FPS) -> None:
    rec["motion"].append(motion_magnitude(frames))
    scores = score_videos([frames], images=None if image is None else [image], fps=fps, dims=list(dims),
                          static_filter=False)
    for d in dims:
        rec["proxies"][d].append(float(scores[d]["per_video"][0]))


def _write_video(folder: Path, i: int, frames: np.ndarray, fps: int = FPS) -> Path:
    return write_video(make_dir(folder, "--out") / f"{i:03d}.mp4", frames, fps=fps)
