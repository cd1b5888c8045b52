"""The light decoder of a `fastlight run` on a diffusers pipeline (its stage 5_decoder).

    settings = decoder_settings({"prune_ratio": 0.75, "steps": 2000})   # the recipe's `decoder:` mapping
    reason = unsupported(PIPELINE / "vae")                               # None, or the stated skip
    summary = build_light_decoder(PIPELINE / "vae", SHARDS, RUN / "5_decoder", settings, seed=0, threads=2)

The pipeline's own VAE decoder is channel-pruned (`prune_vae`: `prune_ratio` of its parameters removed,
channel scores on the first `calib` latents of the run's shards) into the same class with a smaller
`decoder_base_dim`, then distilled (`DecoderDistillRecipe` on the one training loop: resumable) to
reproduce the full decoder's output on the run's latents, which the teacher VAE decodes as the targets.
Writes OUT/pruned (prune-decoder's folder) and OUT/distill (the training folder; OUT/distill/model is a stock
AutoencoderKLWan folder + manifest.json).

`decoder:` keys: enabled (false: no stage), student (pruned | fast, below), prune_ratio, calib, head (full |
patch2) and res_blocks (resnets per up block, null: the teacher's) -- the light layout, prune.py's light_config --
and any key of `fastlight distill-decoder`
(DecoderDistillConfig: steps, batch_size, lr, l1_weight, feature_weight, mixed_precision, ...) but the
four the stage sets (out, teacher, student, latents). `decoder: none` is `{enabled: false}`.
The fastest stock-class layout (benchmarks/decoder_configs.py: ~1/12 of the full Shapes decoder's CPU time, where
width alone stops at ~1/4) is `{prune_ratio: 0.95, head: patch2, res_blocks: 0}`: a decode-only stock VAE
(its encoder is a placeholder); its new head starts at a least-squares fit and wants lr 1e-3, warmup 20
(measured on Shapes: benchmarks/README.md). The defaults keep the stock layout (prune_ratio 0.75, head full).
`student: fast` (default `pruned`) builds a `FastWanDecoder` (fastlight/decoder/fast.py: one pass over the clip,
2-D convs on folded frames, pixel-shuffle head; ~1/28 of the full Shapes decoder's CPU time at the default
`fast_width: 16`; its depth: `fast_latent_blocks`, `fast_spatial_blocks`, `fast_time_levels`) instead: nothing
is pruned (prune_ratio / calib / head / res_blocks, e.g. a recipe's, are ignored and listed in the summary's
`ignored`), it is distilled from scratch on the same latents (OUT/distill/model is a FastWanDecoder folder,
decode only).
`sample_from: student` (default `data`) distils on the run's Stage III student's own samples instead of the data
shards (`pool_size` of them, default 256, sampled by fastlight/decoder/pool.py on the training stream's conditions
into OUT/student_latents.safetensors): the latents the light decoder decodes behind the student.
Supported: AutoencoderKLWan in the Wan 2.1 layout (what prune.py can cut while keeping the class); any
other VAE (HunyuanVideo's AutoencoderKLHunyuanVideo, the Wan 2.2 residual VAE) is a stated skip.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from fastlight.config import from_dict
from fastlight.decoder.distill import DecoderDistillConfig, DecoderDistillRecipe
from fastlight.decoder.prune import HEADS, VAE_CLASS
from fastlight.decoder.prune_vae import prune_vae
from fastlight.errors import ConfigError
from fastlight.fileio import read_json_object
from fastlight.train.loop import train

RUN_KEYS = ("enabled", "student", "prune_ratio", "calib", "head", "res_blocks", "sample_from")  # the stage's own keys; the rest go to DecoderDistillConfig
SET_BY_STAGE = ("out", "teacher", "student", "latents")
DEFAULTS = {"student": "pruned", "prune_ratio": 0.75, "calib": 16, "head": "full", "res_blocks": None,
            "sample_from": "data"}
STUDENTS = ("pruned", "fast")  # the stock class pruned (prune.py) | a FastWanDecoder (fast.py)
SAMPLE_FROM = ("data", "student")  # the latents distilled on: the run's shards | the run's student's samples (pool.py)
STUDENT_POOL = 256  # sample_from: student without pool_size: this many student samples
PRUNE_KEYS = ("prune_ratio", "calib", "head", "res_blocks")  # the pruned student's layout
FAST_KEYS = ("fast_width", "fast_latent_blocks", "fast_spatial_blocks", "fast_time_levels")  # the fast student's
OFF = (None, "none", "None", "off", False)


def decoder_keys() -> tuple[str, ...]:
    distill = [f.name for f in dataclasses.fields(DecoderDistillConfig) if f.name not in SET_BY_STAGE]
    return (*RUN_KEYS, *distill)


def decoder_settings(value) -> dict:
    """`decoder:` -> a checked mapping: none / off / false -> {enabled: false}; a mapping's keys must be
    decoder_keys() (one line naming the unknown ones)."""
    if value in OFF:
        return {"enabled": False}
    if not isinstance(value, dict):
        raise ConfigError(f"decoder must be a mapping (decoder: {{prune_ratio: 0.75, steps: 2000}}) or none, "
                          f"got {value!r}")
    unknown = sorted(set(value) - set(decoder_keys()))
    if unknown:
        raise ConfigError(f"decoder has unknown key(s) {unknown}; valid keys are {', '.join(decoder_keys())}")
    if "enabled" in value and not isinstance(value["enabled"], bool):
        raise ConfigError(f"decoder.enabled must be true or false, got {value['enabled']!r}")
    student = value.get("student", DEFAULTS["student"])
    if student not in STUDENTS:
        raise ConfigError(f"decoder.student must be one of {', '.join(STUDENTS)} (fast: a FastWanDecoder, "
                          f"fastlight/decoder/fast.py), got {student!r}")
    if value.get("sample_from", DEFAULTS["sample_from"]) not in SAMPLE_FROM:
        raise ConfigError(f"decoder.sample_from must be one of {', '.join(SAMPLE_FROM)} (student: distil on the run's "
                          f"student's samples), got {value['sample_from']!r}")
    ratio = value.get("prune_ratio", DEFAULTS["prune_ratio"])
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ConfigError(f"decoder.prune_ratio must be a fraction of the decoder's parameters in (0, 1), got {ratio!r}")
    calib = value.get("calib", DEFAULTS["calib"])
    if isinstance(calib, bool) or not isinstance(calib, int) or calib < 1:
        raise ConfigError(f"decoder.calib must be a whole number >= 1, got {calib!r}")
    head = value.get("head", DEFAULTS["head"])
    if head not in HEADS:
        raise ConfigError(f"decoder.head must be one of {', '.join(HEADS)} (patch2: the last up stage becomes 2x2 "
                          f"depth-to-space), got {head!r}")
    nrb = value.get("res_blocks", DEFAULTS["res_blocks"])
    if nrb is not None and (isinstance(nrb, bool) or not isinstance(nrb, int) or nrb < 0):
        raise ConfigError(f"decoder.res_blocks must be a whole number >= 0 (resnets per up block) or null (the "
                          f"teacher's), got {nrb!r}")
    return dict(value)


def is_fast(settings: dict) -> bool:
    """The settings ask for a FastWanDecoder (`student: fast`)."""
    return settings.get("student", DEFAULTS["student"]) == "fast"


def layout(settings: dict) -> dict:
    """The light layout the settings ask for: {prune_ratio, head, res_blocks} (defaults filled in); for
    `student: fast` {student: fast, fast_width, fast_latent_blocks, fast_spatial_blocks, fast_time_levels}."""
    if is_fast(settings):
        return {"student": "fast", **{k: settings.get(k, getattr(DecoderDistillConfig, k)) for k in FAST_KEYS}}
    return {k: settings.get(k, DEFAULTS[k]) for k in ("prune_ratio", "head", "res_blocks")}


def from_student(settings: dict) -> bool:
    """The settings distil on the run's student's samples (`sample_from: student`), not its data shards."""
    return settings.get("sample_from", DEFAULTS["sample_from"]) == "student"


def student_pool_size(settings: dict) -> int:
    """How many student samples `sample_from: student` draws: `pool_size`, else STUDENT_POOL."""
    return int(settings.get("pool_size") or STUDENT_POOL)


def enabled(settings: dict) -> bool:
    """The run has a decoder stage: a non-empty `decoder:` mapping that is not enabled: false."""
    return bool(settings) and settings.get("enabled", True) is not False


def unsupported(vae_dir: Path) -> str | None:
    """None when the pruner can cut this VAE's decoder, else the one line the run states."""
    f = Path(vae_dir) / "config.json"
    cfg = read_json_object(f, ConfigError, "re-download the pipeline") if f.is_file() else {}
    name = cfg.get("_class_name") or "a VAE without config.json"
    if name != VAE_CLASS:
        return (f"light decoder: not supported for {name} (decoder pruning keeps the class and supports "
                f"{VAE_CLASS} in the Wan 2.1 layout)")
    if cfg.get("is_residual"):
        return (f"light decoder: not supported for {VAE_CLASS} with is_residual=true (the Wan 2.2 VAE's residual "
                "decoder; decoder pruning supports the Wan 2.1 layout)")
    return None


def distill_config(settings: dict, vae_dir: Path, latents: Path, out: Path, seed: int = 0,
                   threads: int = 2) -> DecoderDistillConfig:
    """The stage's DecoderDistillConfig: the stage's folders and data, the run's seed and threads, the settings."""
    student = "fast" if is_fast(settings) else str(Path(out) / "pruned")
    base = {"out": str(Path(out) / "distill"), "teacher": str(vae_dir), "student": student,
            "latents": str(latents), "seed": seed, "data_seed": seed, "threads": threads}
    own = {k: v for k, v in settings.items() if k not in RUN_KEYS}
    return from_dict(DecoderDistillConfig, {**base, **own}, "decoder (the run's 5_decoder stage)")


def build_light_decoder(vae_dir: Path, latents: Path, out: Path, settings: dict, seed: int = 0, threads: int = 2,
                        progress: bool = True) -> dict:
    """Prune (skipped when OUT/pruned is complete) and distil (resumes from its checkpoints) the light decoder;
    returns the stage summary {decoder, decoder_params, decoder_params_before, decoder_base_dim, ...}."""
    out = Path(out)
    cfg = distill_config(settings, vae_dir, latents, out, seed, threads)
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # `decoder.threads` for the whole stage; the run's own count restored after
    try:
        if is_fast(settings):
            model = _distil_fast(out, cfg, progress)
        else:
            model = _prune_and_distil(vae_dir, latents, out / "pruned", settings, cfg, seed, progress)
    finally:
        torch.set_num_threads(before)
    man = json.loads((model / "manifest.json").read_text())
    if is_fast(settings):
        return {"decoder": str(model), "vae_class": "FastWanDecoder", **layout(settings), "encoder": "none",
                "ignored": sorted(set(settings) & set(PRUNE_KEYS)),  # a recipe's pruning keys: nothing is pruned
                "feature_sites": man.get("feature_sites"), "decoder_params": man["decoder_params"],
                "decoder_params_before": man["teacher_decoder_params"], "steps": cfg.steps,
                "psnr_vs_teacher_db": last_metric(Path(cfg.out), "psnr_vs_teacher_db")}
    pruning = man.get("pruning", {})
    return {"decoder": str(model), "vae_class": VAE_CLASS, **layout(settings),
            "achieved_ratio": pruning.get("achieved_ratio"),
            "decoder_base_dim": pruning.get("config_change", {}).get("decoder_base_dim"),
            "config_change": pruning.get("config_change"), "encoder": pruning.get("encoder"),
            "decoder_params": man["decoder_params"], "decoder_params_before": man["teacher_decoder_params"],
            "steps": cfg.steps, "psnr_vs_teacher_db": last_metric(Path(cfg.out), "psnr_vs_teacher_db")}


def _distil_fast(out: Path, cfg: DecoderDistillConfig, progress: bool) -> Path:
    """Distil a FastWanDecoder from scratch (resumes); a kept OUT/pruned (a pruned-student stage) is refused."""
    if (out / "pruned").exists():
        raise ConfigError(f"{out} holds a pruned light decoder (pruned/), the decoder settings ask for student: fast; "
                          f"delete {out} to rebuild the light decoder")
    return train(DecoderDistillRecipe(cfg), cfg, progress=progress)


def _prune_and_distil(vae_dir: Path, latents: Path, pruned: Path, settings: dict, cfg: DecoderDistillConfig,
                      seed: int, progress: bool) -> Path:
    want, calib = layout(settings), settings.get("calib", DEFAULTS["calib"])
    man = pruned / "manifest.json"
    if not man.is_file():  # prune_vae writes the folder atomically: complete or absent
        prune_vae(vae_dir, want["prune_ratio"], pruned, calib=calib, latents=str(latents), seed=seed, overwrite=True,
                  progress=progress, res_blocks=want["res_blocks"], head=want["head"])
    else:
        _check_pruned(read_json_object(man, ConfigError, "delete it to prune again"), want, pruned)
    return train(DecoderDistillRecipe(cfg), cfg, progress=progress)


def _check_pruned(manifest: dict, want: dict, pruned: Path) -> None:
    """A kept OUT/pruned must be the layout the settings ask for (else one line: delete the stage to rebuild)."""
    have = {"prune_ratio": manifest.get("target_ratio"), "head": manifest.get("head", "full"),
            "res_blocks": manifest.get("num_res_blocks")}
    change = manifest.get("config_change", {}).get("num_res_blocks")
    teacher_rb = change["from"] if change else have["res_blocks"]
    want = dict(want, res_blocks=teacher_rb if want["res_blocks"] is None else want["res_blocks"])
    if have != want:
        raise ConfigError(f"{pruned} was pruned with {have}, the decoder settings ask for {want}; delete "
                          f"{pruned.parent} to rebuild the light decoder")


def last_metric(train_dir: Path, key: str) -> float | None:
    """The last logged value of `key` in a training folder's metrics.jsonl (None if never logged)."""
    f = Path(train_dir) / "metrics.jsonl"
    value = None
    if f.is_file():
        for line in f.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            value = rec.get(key, value)
    return value
