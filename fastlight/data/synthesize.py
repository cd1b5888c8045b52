"""Latent shards from prompts alone: the teacher pipeline generates them (the data-free route).

    index = synthesize("Wan2.1-T2V-1.3B-Diffusers", "prompts.txt", "shards/", num_steps=50, guidance=5.0,
                       num_frames=81, height=480, width=832, seed=0, batch_size=4, samples_per_prompt=2)
    source = LatentShardSource("shards/", batch_size=8)        # reads them exactly like preprocess's

Per prompt (one a line; blank lines and `#` comments skipped) the text is encoded as the stock pipeline
does it. Wan: cleaned and run through the pipeline's T5/UMT5 (`max_text_len` tokens, default the
pipeline folder's own text length (`latents.pipeline_text_len`), else 512, padded positions zero), or
looked up in a `text_embeds` safetensors file ({prompt number "0", "1", ...: (L, D)},
optionally "null": the negative prompt's). HunyuanVideo (HunyuanVideoPipeline): Llama on the prompt in
the pipeline's prompt template, cropped at its `crop_start`, hidden_states[-3], `max_text_len` tokens
(default 256) with their mask, and CLIP's pooled output, stored as `extra.pooled` (N, P)
(`latents._HunyuanEmbeds`). The teacher (the pipeline's transformer, `load_denoiser`) samples
`samples_per_prompt` latents with our Euler flow sampler and classifier-free guidance against the
negative prompt "" encoded the same way (text and, for HunyuanVideo, pooled): `guidance` defaults to
the stock pipeline's (Wan 5; HunyuanVideo 1, its `true_cfg_scale`: a guidance-distilled HunyuanVideo
takes `embedded_guidance`, default 6, through its guidance embedding, stored per sample as
`extra.guidance` in diffusers units, x 1000). The grid is the stock pipeline's: Wan `shifted_grid`
(a `SamplerSpec.euler` whose shift defaults to the pipeline scheduler's); HunyuanVideo, the sigmas its
scheduler makes of linspace(1, 0, N + 1)[:-1] (recorded as settings["levels"]). Sample j of prompt i
starts from noise of its own seeded stream (`stream_generator(seed, "synthesize/noise", i, j)`), so
resuming does not change any sample and batching changes it only by float rounding (a batched GEMM
rounds a row differently).

Text+image-to-video (Wan 2.2 TI2V, `expand_timesteps` in model_index.json): `images` is a folder of
first frames named by prompt number (0.png, 1.png, ...; every prompt needs one); each is resized to
cover height x width, centre-cropped, VAE-encoded (posterior mode, normalised) and kept clean as the
first latent frame (timestep 0 on its tokens), and the shards also hold it as `image` (N, C, 1, H', W').

Output: exactly `fastlight preprocess`'s layout (fastlight/data/latents.py): `latents_NNNNN.safetensors`
shards {x0 (N, C, F', H', W') float32 normalised latents, text (N, L, D), text_mask (N, L), extra.*},
`null.safetensors` (the negative prompt's embedding the CFG used: recipes train CFG dropout against it,
index["null"]) and `index.json`, which also records how the shards were made (`synthesize`: pipeline,
transformer and VAE fingerprints, sampler, seed, prompts checksum). Shard n holds samples [n * shard_size,
(n + 1) * shard_size) in (prompt, sample) order and is written atomically as soon as it is complete;
`synthesize.json` records the finished shards while the run is going, so a rerun with the same
arguments skips them and ends with the same shards as an uninterrupted run, bit for bit with the same
batch size (the batch size is not part of the settings; other settings are refused).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from fastlight.data.latents import (EXTRA_PREFIX, HUNYUAN_TEXT_LEN, INDEX_NAME, NEGATIVE_PROMPT, SHARD_PATTERN,
                                    _EncoderEmbeds, _FileEmbeds, _HunyuanEmbeds, _pad_text, _save_tensors_atomic, _Vae,
                                    pipeline_text_len, resize_crop, save_null, vae_fingerprint, wan_vae_factors,
                                    write_made)
from fastlight.data.source import stream_generator
from fastlight.diffusion.sampling import euler_sample
from fastlight.diffusion.spec import DEFAULT_SHIFT, SamplerSpec
from fastlight.errors import DataError, InputError, MissingFileError, ModelError, OutputExistsError, PathError, make_dir
from fastlight.fileio import atomic_write_json, read_json_object, sha256_file
from fastlight.models.denoiser import Cond
from fastlight.models.load import import_pipeline_components, load_denoiser, model_fingerprint

PROGRESS_NAME = "synthesize.json"
MADE_BY = "fastlight synthesize"
NOISE_STREAM = "synthesize/noise"
NULL_KEY = "null"  # the negative-prompt entry of a text_embeds file
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
WAN_CLASSES = ("WanPipeline", "WanImageToVideoPipeline")
HUNYUAN_CLASS = "HunyuanVideoPipeline"
# per family: the stock pipeline's CFG scale, text length and the text-encoder folders it needs
FAMILY_DEFAULTS = {
    "wan": {"guidance": 5.0, "max_text_len": 512, "text_folders": ("text_encoder", "tokenizer")},
    "hunyuan": {"guidance": 1.0, "max_text_len": HUNYUAN_TEXT_LEN,  # true CFG off; guidance is embedded
                "text_folders": ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")},
}
DEFAULT_EMBEDDED_GUIDANCE = 6.0  # HunyuanVideoPipeline's guidance_scale (embedded guidance, passed x 1000)


# ----------------------------------------------------------------------------- inputs
def read_prompts(path: str | Path) -> list[str]:
    """One prompt a line; blank lines and lines starting with `#` are skipped."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"prompts file {path} does not exist; pass --prompts a text file with one prompt a line")
    prompts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise DataError(f"prompts file {path} holds no prompts (only blank or # lines); write one prompt a line")
    return prompts


def pipeline_family(index: dict) -> str:
    """"hunyuan" for a HunyuanVideoPipeline's model_index.json, else "wan"."""
    return "hunyuan" if index.get("_class_name") == HUNYUAN_CLASS else "wan"


def check_pipeline(folder: str | Path, need_text_encoder: bool = True) -> dict:
    """A Wan or HunyuanVideo diffusers pipeline folder -> its model_index.json; one-line errors naming
    what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"pipeline folder {folder} does not exist; pass a diffusers pipeline folder "
                               "(e.g. Wan2.1-T2V-1.3B-Diffusers)")
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise ModelError(f"{folder} has no model_index.json: not a diffusers pipeline folder")
    index = read_json_object(index_file, ModelError, "re-download the pipeline")
    import_pipeline_components(folder)  # plug-in text encoders (the Shapes phrase encoder) for the stock loaders
    cls = index.get("_class_name")
    if cls not in (*WAN_CLASSES, HUNYUAN_CLASS):
        raise ModelError(f"synthesize supports Wan and HunyuanVideo text-to-video pipelines; {folder} is a {cls}: "
                         "make its shards from videos with `fastlight preprocess`")
    if cls == "WanImageToVideoPipeline" and not index.get("expand_timesteps"):
        raise ModelError(f"{folder} is a Wan 2.1 image-to-video pipeline (CLIP image encoder), which synthesize "
                         "does not drive; use a text-to-video or Wan 2.2 TI2V pipeline")
    if (index.get("transformer_2") or [None])[0] is not None:
        raise ModelError(f"{folder} has two experts (transformer_2, Wan 2.2 A14B); synthesize drives one transformer: "
                         "use a single-transformer Wan pipeline")
    if not (folder / "transformer" / "config.json").is_file():
        raise ModelError(f"pipeline {folder} has no transformer/ (the teacher that generates the latents); pass the "
                         "complete pipeline folder")
    if not (folder / "vae" / "config.json").is_file():
        raise ModelError(f"pipeline {folder} has no vae/ (its geometry sizes the latents and its fingerprint goes "
                         "into the index); pass the complete pipeline folder")
    if need_text_encoder:
        folders = FAMILY_DEFAULTS[pipeline_family(index)]["text_folders"]
        for sub in folders:
            if not (folder / sub).is_dir():
                instead = ("" if cls == HUNYUAN_CLASS else ", or pass precomputed embeddings with --text-embeds "
                           f"FILE.safetensors ({{prompt number: (L, D)}}, optional {NULL_KEY!r})")
                raise ModelError(f"pipeline {folder} has no {sub}/ to encode the prompts; copy "
                                 f"{', '.join(f + '/' for f in folders)} from the original pipeline{instead}")
    return index


def vae_geometry(vae_dir: Path) -> tuple[str, int, int]:
    """(class, temporal factor, spatial factor) of a pipeline's VAE from its config."""
    cfg = read_json_object(vae_dir / "config.json", ModelError, "re-download the pipeline")
    name = cfg.get("_class_name")
    if name == "AutoencoderKLHunyuanVideo":
        return name, int(cfg.get("temporal_compression_ratio", 4)), int(cfg.get("spatial_compression_ratio", 8))
    if name != "AutoencoderKLWan":
        raise ModelError(f"{vae_dir} holds a {name}; synthesize supports AutoencoderKLWan and AutoencoderKLHunyuanVideo")
    return (name, *wan_vae_factors(cfg))


def pipeline_shift(folder: Path) -> float:
    """The flow shift the pipeline's scheduler uses (UniPC `flow_shift`, FlowMatchEuler `shift`)."""
    f = folder / "scheduler" / "scheduler_config.json"
    cfg = read_json_object(f, ModelError, "re-download the pipeline") if f.is_file() else {}
    return float(cfg.get("flow_shift") or cfg.get("shift") or DEFAULT_SHIFT)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _patch(tcfg: dict) -> tuple[int, int, int]:
    """(t, h, w) patch of a transformer config: Wan's patch_size triple, HunyuanVideo's patch_size_t + patch_size."""
    p = tcfg["patch_size"]
    return tuple(p) if isinstance(p, (list, tuple)) else (int(tcfg.get("patch_size_t", 1)), int(p), int(p))


def _latent_shape(channels: int, patch, temporal: int, spatial: int, num_frames: int, height: int, width: int):
    if (num_frames - 1) % temporal:
        k = max(1, round((num_frames - 1) / temporal))
        raise DataError(f"--num-frames {num_frames} does not fit the VAE (it compresses time by {temporal}); "
                        f"use 1 + {temporal}k frames, e.g. {1 + temporal * k}")
    step_h, step_w = spatial * patch[1], spatial * patch[2]
    if height % step_h or width % step_w:
        raise DataError(f"--height/--width {height}x{width} must be multiples of {step_h}x{step_w} (the VAE's "
                        f"{spatial}x times the transformer's patch); e.g. {height // step_h * step_h or step_h}x"
                        f"{width // step_w * step_w or step_w}")
    return (channels, (num_frames - 1) // temporal + 1, height // spatial, width // spatial)


# ----------------------------------------------------------------------------- the output folder
def _prior_run(out: Path) -> dict | None:
    """The record of an earlier synthesize run in `out` (index.json or synthesize.json), None if `out`
    is absent or empty; refuses a folder holding anything else."""
    if out.exists() and not out.is_dir():
        raise PathError(f"--out {out} is a file; give a folder path")
    if not out.exists() or not any(out.iterdir()):
        return None
    for name in (PROGRESS_NAME, INDEX_NAME):
        f = out / name
        if f.is_file():
            try:
                rec = json.loads(f.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("synthesize", {}).get("made_by") == MADE_BY:
                return rec
    raise OutputExistsError(f"--out {out} is not empty and was not made by fastlight synthesize; "
                            "pass a new or empty folder")


def _done_shards(out: Path, prior: dict | None, settings: dict) -> dict[str, dict]:
    """The finished shards of a prior run with the same settings (checked on disk), by file name."""
    if prior is None:
        return {}
    before = prior["synthesize"].get("settings", {})
    if before != settings:
        diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        raise OutputExistsError(f"--out {out} holds shards synthesized with other settings (differs in: "
                                f"{', '.join(diff)}); rerun with the same arguments to resume, or pass a new folder")
    done = {}
    for s in prior.get("shards", []):
        f = out / s["file"]
        if f.is_file() and sha256_file(f) == s.get("sha256"):
            done[s["file"]] = s
    return done


# ----------------------------------------------------------------------------- text
class _Text:
    """Prompt -> (L, D) embedding, (L,) mask and {name: extra} (HunyuanVideo: pooled (P,)), cached by
    prompt number; the null (negative) text. Wan: the pipeline's T5/UMT5 on the cleaned prompt (or a
    text_embeds file); HunyuanVideo: its Llama + CLIP as HunyuanVideoPipeline.encode_prompt does."""

    def __init__(self, pipeline: Path, family: str, text_embeds: Path | None, max_text_len: int, device,
                 num_prompts: int):
        self._file, self.length, self._encode = None, max_text_len, None
        if text_embeds is not None:
            self._file = _FileEmbeds(text_embeds)
            self.length = self._file.max_len
            missing = [i for i in range(num_prompts) if str(i) not in self._file.keys]
            if missing:
                raise DataError(f"text embeddings file {text_embeds} has no entry {str(missing[0])!r} "
                                f"({len(missing)} of {num_prompts} prompts missing); it needs one (L, D) tensor per "
                                "prompt, keyed by the prompt's number (0, 1, ... in prompts-file order)")
        elif family == "hunyuan":
            enc = _HunyuanEmbeds(pipeline, max_text_len, device)
            self._encode = lambda text: enc.encode(None, text)
        else:
            from diffusers.pipelines.wan.pipeline_wan import prompt_clean  # what WanPipeline does to a prompt

            enc = _EncoderEmbeds(pipeline, max_text_len, device)
            self._encode = lambda text: (enc(text, prompt_clean(text)), {})
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, dict]] = {}

    def __call__(self, i: int, prompt: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
        if i not in self._cache:
            emb, extra = (self._file(str(i), None), {}) if self._encode is None else self._encode(prompt)
            self._cache[i] = (*_pad_text(emb, self.length), extra)  # present in a file: checked in __init__
        return self._cache[i]

    def null(self) -> tuple[torch.Tensor | None, dict]:
        """((1, l, D) the negative prompt's embedding (trimmed; the sampler zero-pads it like the pipeline),
        {name: (1, ...)} its extras); (None, {}) when a text_embeds file has no "null" entry."""
        if self._encode is not None:
            emb, extra = self._encode(NEGATIVE_PROMPT)
            return emb[None], {k: v[None] for k, v in extra.items()}
        emb = self._file(NULL_KEY, None)
        return (None if emb is None else emb[None]), {}


# ----------------------------------------------------------------------------- first frames (TI2V)
def pair_images(images_dir: str | Path, num_prompts: int) -> list[Path]:
    """The first frame of each prompt: the image whose stem is the prompt's number (0.png, 00001.jpg,
    ...: 0-based, in prompts-file order). Every prompt needs one, and no image may name another number."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise MissingFileError(f"--images {folder} is not a folder; pass a folder of first frames named by prompt "
                               "number (0.png, 1.png, ...)")
    by_number: dict[int, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() in IMAGE_EXTENSIONS and f.stem.isdigit():
            k = int(f.stem)
            if k in by_number:
                raise DataError(f"--images {folder}: {by_number[k].name} and {f.name} both name prompt {k}; keep one")
            by_number[k] = f
    missing = [k for k in range(num_prompts) if k not in by_number]
    if missing:
        raise DataError(f"--images {folder} has no image for prompt {missing[0]} ({len(missing)} of {num_prompts} "
                        "missing); name each first frame by its prompt's number in the prompts file: 0.png, 1.png, ...")
    extra = sorted(k for k in by_number if k >= num_prompts)
    if extra:
        raise DataError(f"--images {folder}: {by_number[extra[0]].name} names prompt {extra[0]} but the prompts file "
                        f"has {num_prompts} prompts (0..{num_prompts - 1}); remove it or add its prompt")
    files = [by_number[k] for k in range(num_prompts)]
    for f in files:  # a broken file is refused before anything is written, not halfway through
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a bad file
            raise DataError(f"first frame {f} is not a readable image ({type(e).__name__}: {e}); replace it") from None
    return files


class _FirstFrames:
    """Prompt number -> the normalised VAE latent (C, 1, H', W') of its first frame, resized to cover
    height x width and centre-cropped (as preprocess does to videos), cached."""

    def __init__(self, vae_dir: Path, files: Sequence[Path], height: int, width: int, device):
        self.vae = _Vae(vae_dir, device, torch.float32)
        self.files, self.size = list(files), (height, width)
        self._cache: dict[int, torch.Tensor] = {}

    def __call__(self, i: int) -> torch.Tensor:
        if i not in self._cache:
            with Image.open(self.files[i]) as im:
                rgb = np.asarray(im.convert("RGB"))[None]  # (1, h, w, 3) uint8
            frame = resize_crop(rgb, *self.size)
            x = torch.from_numpy(frame).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # (1, 3, 1, H, W)
            self._cache[i] = self.vae.encode(x)[0]  # (C, 1, H', W')
        return self._cache[i]


# ----------------------------------------------------------------------------- synthesize
def synthesize(
    pipeline: str | Path,
    prompts: str | Path,
    out_dir: str | Path,
    num_steps: int = 50,
    guidance: float | None = None,
    shift: float | None = None,
    num_frames: int = 81,
    height: int = 480,
    width: int = 832,
    seed: int = 0,
    batch_size: int = 1,
    samples_per_prompt: int = 1,
    shard_size: int = 64,
    max_text_len: int | None = None,
    text_embeds: str | Path | None = None,
    images: str | Path | None = None,
    embedded_guidance: float | None = None,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Generate latent shards from `prompts` with the pipeline's teacher into `out_dir`; return the index.
    guidance (CFG scale) and max_text_len default to the stock pipeline's (Wan 5 and 512; HunyuanVideo 1,
    i.e. true CFG off, and 256; max_text_len: the text length the pipeline folder records, if any); embedded_guidance (HunyuanVideo's guidance-distilled embedding, default 6)
    only applies to a HunyuanVideo transformer with guidance_embeds. Every input is checked before
    anything is written (one-line FastlightErrors)."""
    pipeline, out_dir = Path(pipeline), Path(out_dir)
    model_index = check_pipeline(pipeline, need_text_encoder=text_embeds is None)
    family = pipeline_family(model_index)
    defaults = FAMILY_DEFAULTS[family]
    guidance = defaults["guidance"] if guidance is None else guidance
    if max_text_len is None:  # the pipeline's own text length (latents.pipeline_text_len), else the stock one
        max_text_len = pipeline_text_len(pipeline) or defaults["max_text_len"]
    _check_options(dtype, num_steps=num_steps, batch_size=batch_size, samples_per_prompt=samples_per_prompt,
                   shard_size=shard_size, num_frames=num_frames, height=height, width=width, max_text_len=max_text_len)
    tcfg = read_json_object(pipeline / "transformer" / "config.json", ModelError, "re-download the pipeline")
    embedded = _embedded_guidance(family, tcfg, embedded_guidance, text_embeds)
    prompt_list = read_prompts(prompts)
    image_files = None
    if images is not None:
        if not model_index.get("expand_timesteps"):
            raise InputError(f"--images needs a TI2V pipeline (Wan 2.2 TI2V: expand_timesteps true in its "
                             f"model_index.json); {pipeline} is text-to-video: drop --images")
        image_files = pair_images(images, len(prompt_list))
    vae_class, temporal, spatial = vae_geometry(pipeline / "vae")
    spec = SamplerSpec.euler(num_steps, guidance, pipeline_shift(pipeline) if shift is None else shift)
    levels = _levels(pipeline, family, spec)
    shape = _latent_shape(tcfg["in_channels"], _patch(tcfg), temporal, spatial, num_frames, height, width)
    prior = _prior_run(out_dir)  # refuse a foreign --out before loading anything
    den = load_denoiser(pipeline / "transformer", device)
    text = _Text(pipeline, family, None if text_embeds is None else Path(text_embeds), max_text_len, device,
                 len(prompt_list))
    settings = {
        "pipeline": str(pipeline.resolve()), "transformer": model_fingerprint(den),
        "vae_fingerprint": vae_fingerprint(pipeline / "vae"), "sampler": spec.to_json(),
        "negative_prompt": NEGATIVE_PROMPT, "num_frames": num_frames, "height": height, "width": width,
        "seed": seed, "samples_per_prompt": samples_per_prompt, "shard_size": shard_size,
        "num_prompts": len(prompt_list),
        "prompts_sha256": hashlib.sha256("\n".join(prompt_list).encode()).hexdigest(),
        "text": {"source": "file" if text_embeds is not None else "encoder",
                 "path": str(text_embeds if text_embeds is not None else pipeline), "length": text.length},
        "dtype": dtype, "images": _images_record(images, image_files),
    }
    if family == "hunyuan":  # its grid and embedded guidance (Wan's settings stay as they were: resumable)
        settings.update({"levels": [round(float(x), 8) for x in levels], "embedded_guidance": embedded})
    done = _done_shards(out_dir, prior, settings)

    null_text, null_extra = text.null()
    _check_text_width(den, null_text, text(0, prompt_list[0])[0])
    if null_text is not None:
        den.load_null_state({"null_text": null_text, **{f"null_{k}": v for k, v in null_extra.items()}})
    den = den.to(dtype=DTYPES[dtype]).eval()
    first = None if image_files is None else _FirstFrames(pipeline / "vae", image_files, height, width, device)
    make_dir(out_dir, "--out")

    items = [(i, j) for i in range(len(prompt_list)) for j in range(samples_per_prompt)]
    record = {"synthesize": {"made_by": MADE_BY, "settings": settings}, "shards": []}
    run = _Run(den, spec.guidance, levels, text, first, prompt_list, shape, seed, batch_size, device, dtype, embedded)
    bar = tqdm(total=len(items), desc="synthesize", unit="sample", disable=not progress)
    for n, start in enumerate(range(0, len(items), shard_size)):
        name, members = SHARD_PATTERN.format(n), items[start:start + shard_size]
        if name in done:
            record["shards"].append(done[name])
        else:
            tensors = _generate(run, members)
            record["shards"].append({"file": name, "num_samples": len(members), "bucket": [height, width],
                                     "x0_shape": list(shape), "sha256": _save_tensors_atomic(out_dir / name, tensors)})
            atomic_write_json(out_dir / PROGRESS_NAME, record)  # resumable from here
        bar.update(len(members))
    bar.close()
    index = _index(record["shards"], items, shard_size, prompt_list, settings, pipeline, vae_class, num_frames,
                   height, width)
    if null_text is not None:  # the null the teacher's CFG used: recipes train CFG dropout against it
        index["null"] = save_null(out_dir, null_text, null_extra)
    return _finish(out_dir, index)


def _embedded_guidance(family: str, tcfg: dict, value: float | None, text_embeds) -> float | None:
    """HunyuanVideo's embedded guidance (default 6, as the stock pipeline) for a guidance_embeds
    transformer, else None; refused where it cannot apply."""
    if family != "hunyuan":
        if value is not None:
            raise InputError("--embedded-guidance applies to HunyuanVideo pipelines only; drop it (Wan uses --guidance)")
        return None
    if text_embeds is not None:
        raise InputError("--text-embeds is not supported for HunyuanVideo (each prompt also needs its pooled CLIP "
                         "embedding): let synthesize encode the prompts with the pipeline's text encoders")
    if not tcfg.get("guidance_embeds"):
        if value is not None:
            raise InputError("--embedded-guidance needs a guidance-distilled HunyuanVideo transformer "
                             "(guidance_embeds true); this one has none: use --guidance")
        return None
    value = DEFAULT_EMBEDDED_GUIDANCE if value is None else float(value)
    if not value >= 0:
        raise InputError(f"--embedded-guidance must be a number >= 0, got {value!r}")
    return value


def _levels(pipeline: Path, family: str, spec: SamplerSpec) -> torch.Tensor:
    """The noise levels the stock pipeline steps through: Wan, our `shifted_grid` (FlowMatchEuler's own
    set_timesteps(N)); HunyuanVideoPipeline passes sigmas linspace(1, 0, N + 1)[:-1] to its scheduler,
    which shifts them once: taken from the pipeline's scheduler itself, with its terminal 0."""
    if family != "hunyuan":
        return torch.tensor(spec.levels)
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = read_json_object(pipeline / "scheduler" / "scheduler_config.json", ModelError, "re-download the pipeline")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config({**config, "shift": spec.shift})
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, spec.num_steps + 1)[:-1])
    return scheduler.sigmas.float().cpu()


def _check_text_width(den, null_text: torch.Tensor | None, first: torch.Tensor) -> None:
    """Refuse text embeddings whose width is not the transformer's text width."""
    cfg = den.model.config
    want = cfg.text_dim if hasattr(cfg, "text_dim") else cfg.text_embed_dim
    widths = {first.shape[-1]} | ({null_text.shape[-1]} if null_text is not None else set())
    if widths != {want}:
        raise DataError(f"text embeddings are {max(widths - {want})} wide but the transformer's text_dim is "
                        f"{want}; use the embeddings of this pipeline's text encoder")


def _check_options(dtype: str, **counts) -> None:
    for name, value in counts.items():
        _positive_int(value, "--" + name.replace("_", "-"))
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _images_record(images, files: Sequence[Path] | None) -> dict | None:
    if files is None:
        return None
    return {"path": str(Path(images).resolve()), "files": [f.name for f in files],
            "sha256": hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()}


def _finish(out_dir: Path, index: dict) -> dict:
    """Write index.json (the run is complete), drop the progress record and any stray shard; return the index.
    (The null embedding the index names is written before it.)"""
    write_made(out_dir)
    atomic_write_json(out_dir / INDEX_NAME, index)
    (out_dir / PROGRESS_NAME).unlink(missing_ok=True)
    keep = {s["file"] for s in index["shards"]}
    for stale in out_dir.glob("latents_*.safetensors"):
        if stale.name not in keep:
            stale.unlink()
    return index


class _Run:
    """What every batch of a synthesize run shares: the teacher, its guidance and levels, text and first
    frames, the latent shape, seed, batch size, device, dtype and embedded guidance."""

    def __init__(self, den, guidance: float, levels: torch.Tensor, text: _Text, first: "_FirstFrames | None",
                 prompts: Sequence[str], shape, seed: int, batch_size: int, device, dtype: str,
                 embedded: float | None):
        self.den, self.guidance, self.levels, self.text, self.first = den, guidance, levels, text, first
        self.prompts, self.shape, self.seed, self.batch_size = prompts, shape, seed, batch_size
        self.device, self.dtype, self.embedded = device, DTYPES[dtype], embedded


def _generate(run: _Run, members) -> dict[str, torch.Tensor]:
    """One shard's tensors: the samples `members` [(prompt number, sample number)], `batch_size` at a time;
    with first frames (TI2V) also `image` (N, C, 1, H', W'), which x0's first frame equals; with extras
    (HunyuanVideo) `extra.pooled` (N, P) and `extra.guidance` (N,) (embedded guidance x 1000, if any)."""
    xs, texts, masks, frames, extras = [], [], [], [], []
    for b in range(0, len(members), run.batch_size):
        batch = members[b:b + run.batch_size]
        noise = torch.stack([torch.randn(run.shape, generator=stream_generator(run.seed, NOISE_STREAM, i, j))
                             for i, j in batch])
        emb = [run.text(i, run.prompts[i]) for i, _ in batch]
        t, mask = torch.stack([e for e, _, _ in emb]), torch.stack([m for _, m, _ in emb])
        extra = {k: torch.stack([x[k] for _, _, x in emb]) for k in emb[0][2]}
        if run.embedded is not None:
            extra["guidance"] = torch.full((len(batch),), run.embedded * 1000.0)
        image = None if run.first is None else torch.stack([run.first(i) for i, _ in batch])
        cond_extra = None if not extra else {**extra, "text_mask": mask.float()}
        cond = Cond(t.to(run.device, run.dtype), None if image is None else image.to(run.device, run.dtype),
                    None if cond_extra is None else {k: v.to(run.device) for k, v in cond_extra.items()})
        x0 = euler_sample(run.den, noise.to(run.device, run.dtype), cond, run.levels, run.guidance)
        xs.append(x0.float().cpu())
        texts.append(t)
        masks.append(mask)
        extras.append(extra)
        if image is not None:
            frames.append(image)
    out = {"x0": torch.cat(xs), "text": torch.cat(texts), "text_mask": torch.cat(masks)}
    for k in extras[0]:
        out[EXTRA_PREFIX + k] = torch.cat([e[k] for e in extras])
    if frames:
        out["image"] = torch.cat(frames)
    return out


def _index(shards, items, shard_size, prompts, settings, pipeline: Path, vae_class, num_frames, height, width) -> dict:
    videos = [{"id": f"p{i:05d}-s{j}", "caption": prompts[i], "prompt_index": i, "sample": j,
               "shard": SHARD_PATTERN.format(k // shard_size), "row": k % shard_size} for k, (i, j) in enumerate(items)]
    return {
        "format": "fastlight-latents/1",
        "shards": shards,
        "num_samples": sum(s["num_samples"] for s in shards),
        "videos": videos,
        "skipped": [],
        "vae": str(pipeline / "vae"),
        "vae_class": vae_class,
        "vae_fingerprint": settings["vae_fingerprint"],
        "num_frames": num_frames,
        "frame_stride": 1,
        "buckets": [[height, width]],
        "text": settings["text"],
        "synthesize": {"made_by": MADE_BY, "settings": settings},
    }
