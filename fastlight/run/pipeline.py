"""`fastlight run RECIPE.yaml`: the whole compression in one run folder, stage by stage.

    fastlightgen  analyze (ELBO) -> plan (depth) -> stage2 (dpp) -> stage3 (fastlightgen DMD) -> evaluate -> bench -> report
    vdmini        analyze (metric drop) -> plan (depth) -> stage2 (icmd: static prune + ICD + MCA) -> evaluate -> bench -> report
    lightning     analyze (Taylor width) -> plan (width) -> stage2 (align) -> stage3 (DMD, step-only) -> evaluate -> bench -> report
    dmd2          stage3 (DMD2, step-only, unpruned) -> evaluate -> bench -> report
    prune_only    analyze (ELBO) -> plan (depth) -> stage2 (icmd with lambda_icd = lambda_mca = 0: fine-tune) -> evaluate -> bench -> report

Run folder (cfg.out): config.yaml (resolved), run.json (stage status, wall times, headline),
one subfolder per stage (`1_analyze/`, `2_plan/`, `3_stage2/`, `4_stage3/`, `evaluate/`,
`bench/`, `report/`). A stage is complete when its `.done.json` exists: re-running the same
command skips complete stages and continues an interrupted training stage from its last
checkpoint (the training loop resumes exactly). Stage configs are the recipes' own typed
configs, built from the run config and its `stage2:` / `stage3:` mappings (`stage2.steps=50`
on the command line).

ETA: each stage has a cost estimate (seconds on the 2-core CPU this was built on, from its
size: calibration samples, steps x batch, cases x network evaluations); after every finished
stage the remaining estimates are rescaled by (measured + ETA_PRIOR_S) / (estimated + ETA_PRIOR_S) so far
(`eta_scale`: a first stage of seconds does not rescale a run of many minutes on its own).

A diffusers pipeline teacher (a folder with model_index.json: Wan 2.1 T2V, Wan 2.2 TI2V,
HunyuanVideo; configs/wan/, configs/hunyuan/) runs

    [0_data] -> 1_analyze -> 2_plan -> 3_stage2 -> [4_stage3] -> [5_decoder] -> export -> evaluate -> bench -> report

with its transformer as the teacher DiT (Euler at teacher_steps / cfg_scale with the pipeline's
scheduler shift). Stages I-III read the latent shards `data:` names ({_component_: latents, path:
SHARDS} or just the shards folder); `synthesize:` (prompts, first frames for TI2V, ...) adds the
stage 0_data, where the teacher generates those shards into RUN/0_data/shards (`fastlight
synthesize`, resumable). `decoder:` ({prune_ratio, calib, steps, ...}; `decoder: none` or
`decoder.enabled=false`: no stage) adds 5_decoder: the pipeline's own VAE decoder pruned and distilled on
the run's latents (fastlight/decoder/stage.py; a VAE the pruner does not support is a stated skip).
`export` writes the student as a stock pipeline folder (RUN/export/pipeline) and, with a light decoder,
the same with it as its vae (RUN/export/pipeline_light); evaluate samples teacher and student on the
`eval:` prompts through the teacher's VAE (Frechet distance, motion ratio, proxies, MP4s), the student's
samples also through the light decoder, and bench times the stock teacher pipeline against the export(s):
three rows side by side (teacher + full decoder, student + full decoder, student + light decoder). A teacher
whose world has an oracle (a plug-in's, `fastlight.evaluate.real.pipeline_oracle`: the Shapes pipeline's
ShapesBench) is evaluated on the oracle's first `eval_cases` TEST cases instead of `eval:`'s prompts, and every
row also gets the oracle's score with its 95% interval and the paired difference row - teacher.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastlight.config import check_ranges
from fastlight.diffusion.spec import SamplerSpec, override, own_sampler
from fastlight.errors import ConfigError, FastlightError, InputError, MissingFileError, make_dir
from fastlight.fileio import atomic_write_json, atomic_write_text, read_json_object
from fastlight.models.load import resolve_model_path
from fastlight.train.lock import RunLock

METHODS = ("fastlightgen", "vdmini", "lightning", "dmd2", "prune_only")
PRESETS = ("quick", "full")  # always accepted (a no-op where `presets:` does not define them)
DONE = ".done.json"
MAPPINGS = ("stage2", "stage3", "synthesize", "eval", "decoder")  # merged key by key by presets; `MAPPING.KEY=VALUE` overrides
# `synthesize:` -> fastlight.data.synthesize.synthesize's keywords (prompts and images are paths)
SYNTH_KEYS = ("prompts", "images", "num_steps", "guidance", "num_frames", "height", "width", "samples_per_prompt",
              "batch_size", "shard_size", "max_text_len", "text_embeds", "dtype")
EVAL_KEYS = ("prompts", "images", "num_frames", "height", "width", "batch_size")
# Wan 2.1's size; recipes set their family's. batch_size: evaluate's prompts sampled, decoded and scored at a
# time (1: a real model's memory; bench always times one video at a time)
EVAL_DEFAULTS = {"num_frames": 81, "height": 480, "width": 832, "batch_size": 1}
PIPELINE_METHODS = ("fastlightgen", "lightning", "dmd2", "prune_only")  # vdmini's metric-drop needs a video metric


@dataclass
class RunConfig:
    out: str = "runs/fastlightgen"
    method: str = "fastlightgen"  # fastlightgen | vdmini | lightning | dmd2 | prune_only
    preset: str = "quick"  # quick | full: which mapping of `presets` is applied over these values
    teacher: str = "shapes-teacher"
    calib: int = 32  # Stage I calibration samples
    data_free: bool = False  # also the data-free ELBO reference (measured rank correlation with data: 1.000)
    metric_cases: int = 16  # vdmini's metric-drop importance: oracle cases per block
    prune_ratio: float = 0.3  # fraction of the DiT's parameters to remove
    stage2: dict = field(default_factory=dict)  # overrides of the Stage II recipe config (dpp / icmd / align)
    stage3: dict = field(default_factory=dict)  # overrides of the Stage III recipe config (fastlightgen / dmd2)
    eval_cases: int = 320  # ShapesBench TEST cases (prompt, first frame, noise), the same for every model (also
    # a pipeline teacher's whose world has an oracle: the Shapes pipeline's, instead of eval.prompts);
    # 320 gives a 95% half-width of about 0.0095 on the teacher's score; fewer is said in the headline
    teacher_steps: int = 50  # the teacher's Euler steps (and a Stage-II-only student's)
    cfg_scale: float = 4.0  # the teacher's CFG
    bench_repeats: int = 3
    seed: int = 0
    threads: int = 2
    # the data of Stages I-III: a data: spec ({_component_: latents, path: SHARDS}) or a shards folder;
    # None: the teacher folder names its own (Shapes), or `synthesize` makes the shards (pipeline teachers)
    data: object = None
    synthesize: dict = field(default_factory=dict)  # pipeline teacher: stage 0_data, the teacher's shards (SYNTH_KEYS)
    eval: dict = field(default_factory=dict)  # pipeline teacher: evaluate / bench prompts and video size (EVAL_KEYS)
    # pipeline teacher: stage 5_decoder, the light VAE decoder ({prune_ratio, calib, steps, ...}: decoder/stage.py);
    # none / {enabled: false}: no stage
    decoder: object = field(default_factory=dict)
    geometry: str = ""  # --dry-run: a memory-plan preset (fastlight/run/memory.py) when `teacher` is not on this machine
    presets: dict = field(default_factory=dict)  # {quick: {key: value, stage2: {...}}, full: {...}, tiny: ...}


def resolve(cfg: RunConfig, keep: frozenset = frozenset(), keep_nested: dict | None = None) -> RunConfig:
    """Apply cfg.presets[cfg.preset] over cfg (the stage mappings merged key by key) and check it.
    `keep` (top-level keys) and `keep_nested` ({"stage2": {...}}) came from the command line: they win
    over the preset."""
    from fastlight.decoder.stage import decoder_settings

    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if not isinstance(cfg.presets, dict):
        raise ConfigError(f"presets must be a mapping of preset name: {{key: value}}, got {cfg.presets!r}")
    if cfg.preset not in cfg.presets and cfg.preset not in PRESETS:
        defined = ", ".join(sorted(cfg.presets)) or "none"
        raise ConfigError(f"unknown preset {cfg.preset!r}: preset must be quick or full or one this config's presets: "
                          f"defines ({defined})")
    preset = dict(cfg.presets.get(cfg.preset) or {})
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"presets", "preset"}
    unknown = sorted(set(preset) - fields)
    if unknown:
        raise ConfigError(f"preset {cfg.preset!r} sets unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    values = dataclasses.asdict(cfg)
    values["decoder"] = decoder_settings(values["decoder"])  # `decoder: none` -> {enabled: false}
    for k, v in preset.items():
        if k in keep:
            continue
        if k == "decoder":
            v = decoder_settings(v)
        if k in MAPPINGS and not isinstance(v, dict):
            raise ConfigError(f"preset {cfg.preset!r}: {k} must be a mapping, got {v!r}")
        values[k] = {**values[k], **v} if k in MAPPINGS else v
    for k, v in (keep_nested or {}).items():
        values[k] = {**values[k], **v}
    values["data"] = data_spec(values["data"])
    values["decoder"] = decoder_settings(values["decoder"])
    out = RunConfig(**values)
    check_ranges(out, f"run config (with preset {cfg.preset!r})")  # the preset's values too
    if not 0 < out.prune_ratio < 1:
        raise ConfigError(f"prune_ratio must be in (0, 1), got {out.prune_ratio}")
    for key in ("calib", "eval_cases", "teacher_steps", "bench_repeats"):
        if getattr(out, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(out, key)}")
    check_data_options(out)
    return out


def data_spec(value) -> dict | None:
    """`data:` -> a data-source spec: a mapping naming `_component_`, or a shards folder (the latents source)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return {"_component_": "latents", "path": str(value)}
    if isinstance(value, dict) and "_component_" in value:
        return dict(value)
    raise ConfigError(f"data must be a shards folder or a source mapping, e.g. data={{_component_: latents, path: "
                      f"SHARDS}}; got {value!r}")


def teacher_folder(c: RunConfig) -> Path:
    return resolve_model_path(c.teacher)


def is_pipeline_teacher(c: RunConfig) -> bool:
    """The teacher is a diffusers pipeline folder (model_index.json). A teacher that is not on this machine
    counts as one when the config has pipeline settings (synthesize / eval): a real-model recipe's dry run."""
    folder = teacher_folder(c)
    if (folder / "model_index.json").is_file():
        return True
    return not folder.exists() and bool(c.synthesize or c.eval)


def _check_keys(mapping: dict, allowed: tuple, what: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{what} must be a mapping, got {mapping!r}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ConfigError(f"{what} has unknown key(s) {unknown}; valid keys are {', '.join(allowed)}")


def check_data_options(c: RunConfig) -> None:
    """data / synthesize / eval fit the teacher: a pipeline teacher needs exactly one of data and synthesize
    (synthesize with prompts); a model-folder teacher (Shapes) takes neither synthesize nor eval."""
    _check_keys(c.synthesize, SYNTH_KEYS, "synthesize")
    _check_keys(c.eval, EVAL_KEYS, "eval")
    if not is_pipeline_teacher(c):
        extra = [k for k in ("synthesize", "eval") if getattr(c, k)] + (["decoder"] if has_decoder_stage(c) else [])
        if extra:
            raise ConfigError(f"{' and '.join(extra)} need a diffusers pipeline teacher (a folder with model_index.json); "
                              f"teacher {c.teacher} is a model folder: drop {', '.join(extra)} or pass teacher=PIPELINE")
        return
    if c.method not in PIPELINE_METHODS:
        raise ConfigError(f"method {c.method} (metric-drop importance) needs a video metric a pipeline teacher does not "
                          f"name; use one of {', '.join(PIPELINE_METHODS)}")
    if c.data is not None and c.synthesize:
        raise ConfigError("give either data: (latent shards you made) or synthesize: (the teacher makes them in stage "
                          "0_data), not both; drop one")
    if c.data is None and not c.synthesize:
        raise ConfigError(f"teacher {c.teacher} is a diffusers pipeline: give data=SHARDS (latent shards from `fastlight "
                          "preprocess` or `fastlight synthesize`) or synthesize.prompts=PROMPTS.txt (the teacher makes "
                          "the shards in stage 0_data)")
    if c.synthesize and not c.synthesize.get("prompts"):
        raise ConfigError("synthesize needs prompts: a text file with one prompt a line (synthesize.prompts=FILE)")
    if not (c.eval.get("prompts") or c.synthesize.get("prompts")):
        raise ConfigError("evaluate and bench need prompts: set eval.prompts=FILE (one prompt a line)")
    if _is_ti2v(c):
        for what, o in (("synthesize", c.synthesize), ("eval", eval_options(c))):
            if (what == "eval" or o) and not o.get("images"):
                raise ConfigError(f"teacher {c.teacher} is text+image-to-video (Wan 2.2 TI2V): {what} needs first "
                                  f"frames, {what}.images=DIR (0.png, 1.png, ...: one per prompt, by its number)")


def has_decoder_stage(c: RunConfig) -> bool:
    """`decoder:` asks for stage 5_decoder (a non-empty mapping without enabled: false)."""
    from fastlight.decoder.stage import enabled

    return enabled(c.decoder)


VIDEO_KEYS = ("num_frames", "height", "width")


def synth_options(c: RunConfig) -> dict:
    """synthesize's keywords for stage 0_data: `synthesize:`; unset: the run's teacher sampler (teacher_steps,
    cfg_scale) and `eval:`'s video size (never its prompts: training on the evaluation prompts would leak)."""
    size = {k: v for k, v in c.eval.items() if k in VIDEO_KEYS}
    return {"num_steps": c.teacher_steps, "guidance": c.cfg_scale, **EVAL_DEFAULTS, **size, **c.synthesize}


def eval_options(c: RunConfig) -> dict:
    """The evaluation prompts, first frames and video size: `eval:`, else `synthesize:`'s, else Wan 2.1's size."""
    base = {k: v for k, v in c.synthesize.items() if k in EVAL_KEYS and k != "batch_size"}  # synthesis' batch is its own
    return {"images": None, **EVAL_DEFAULTS, **base, **c.eval}


def _is_ti2v(c: RunConfig) -> bool:
    """The teacher pipeline conditions on a first frame (Wan 2.2 TI2V: expand_timesteps in model_index.json)."""
    f = teacher_folder(c) / "model_index.json"
    return f.is_file() and bool(read_json_object(f, ConfigError, "re-download the pipeline").get("expand_timesteps"))


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, dict]]:
    """`key=value` for the run config; `stage2.key=value` (stage3, synthesize, eval, decoder) into those mappings."""
    import yaml

    plain, nested = [], {k: {} for k in MAPPINGS}
    for o in overrides:
        key, sep, value = o.partition("=")
        section, dot, sub = key.partition(".")
        if sep and dot and section in nested:
            nested[section][sub.strip()] = yaml.safe_load(value) if value.strip() else ""
        elif sep and dot:
            raise ConfigError(f"override {o!r}: only {', '.join(m + '.KEY=VALUE' for m in MAPPINGS)} may be dotted")
        else:
            plain.append(o)
    return plain, {k: v for k, v in nested.items() if v or k in ("stage2", "stage3")}


# ---- stages ----------------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str  # folder name under the run folder
    what: str  # one line for the progress view
    run: Callable[["Run"], dict]  # does the work, returns a small summary
    est_s: float  # estimated seconds on the reference 2-core CPU


class Run:
    """One run folder: the resolved config and paths every stage reads."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.root = Path(cfg.out)

    def dir(self, name: str) -> Path:
        return self.root / name

    @property
    def plan(self) -> Path:
        return self.dir("2_plan") / "plan.json"

    @property
    def stage2_model(self) -> Path:
        return self.dir("3_stage2") / "model"

    @property
    def stage3_model(self) -> Path:
        return self.dir("4_stage3") / "model"

    @property
    def student(self) -> Path:
        has3 = self.cfg.method in ("fastlightgen", "lightning", "dmd2")
        return self.stage3_model if has3 else self.stage2_model

    @property
    def pipeline(self) -> bool:
        """The teacher is a diffusers pipeline (the real-model stages: 0_data, export, pipeline evaluate/bench)."""
        return is_pipeline_teacher(self.cfg)

    @property
    def shards(self) -> Path:
        return self.dir("0_data") / "shards"

    @property
    def data(self) -> dict | None:
        """The data source of Stages I-III: `data:`, else the shards stage 0_data synthesizes, else None
        (the teacher folder names its own)."""
        if self.cfg.data is not None:
            return self.cfg.data
        return {"_component_": "latents", "path": str(self.shards)} if self.cfg.synthesize else None

    @property
    def export_pipeline(self) -> Path:
        return self.dir("export") / "pipeline"

    @property
    def export_light(self) -> Path:
        """The exported student with the light decoder as its vae (when 5_decoder built one)."""
        return self.dir("export") / "pipeline_light"

    def light_decoder(self) -> Path | None:
        """The light decoder stage 5_decoder built (None: no such stage, not run yet, or a stated skip)."""
        done = self.dir("5_decoder") / DONE
        summary = json.loads(done.read_text()).get("summary", {}) if done.exists() else {}
        # this run folder's own copy (the summary's absolute path names where the stage ran: a moved run differs)
        return self.light_decoder_dir if summary.get("decoder") else None

    @property
    def light_decoder_dir(self) -> Path:
        return self.dir("5_decoder") / "distill" / "model"


def _recipe_config(recipe: str, base: dict, overrides: dict):
    """The recipe's typed config from `base` (set by the pipeline) and the user's stage mapping."""
    from fastlight.config import from_dict
    from fastlight.train.entry import available_recipes

    config_cls, _ = available_recipes()[recipe]
    return from_dict(config_cls, {**base, **overrides}, f"stage config ({recipe})")


def _train(recipe: str, cfg) -> Path:
    from fastlight.train.entry import run_recipe

    if trained_elsewhere(cfg):
        print(f"resuming {cfg.out}: its final checkpoint (step {cfg.steps}, this config) and model are there "
              "already (trained e.g. under accelerate launch from its config.yaml); using that model")
        return Path(cfg.out) / "model"
    return run_recipe(recipe, cfg, progress=True)


def trained_elsewhere(cfg) -> bool:
    """The stage folder holds this very config's finished training: the final checkpoint (step == steps, same
    config hash) and a model written after it. Re-entering the loop would re-save the model folder, whose
    new bytes the next stage's resume check would take for another teacher."""
    from fastlight.train.checkpoint import config_hash, list_checkpoints

    out = Path(cfg.out)
    ckpts, model = list_checkpoints(out), out / "model" / "config.json"
    if not ckpts or not model.is_file():
        return False
    state = json.loads((ckpts[-1] / "state.json").read_text())
    return (state.get("step") == cfg.steps and state.get("config_hash") == config_hash(cfg)
            and model.stat().st_mtime >= (ckpts[-1] / "state.json").stat().st_mtime)


def stage_analyze(run: Run) -> dict:
    from fastlight.analyze.importance import compute_importance

    c = run.cfg
    method = {"vdmini": "metric", "lightning": "taylor"}.get(c.method, "elbo")
    real = {}
    if run.pipeline:  # calibrate on the shards at the pipeline's noise shift; small batches (real videos are big)
        real = {"shift": teacher_shift(c), "batch_size": min(c.calib, 4)}
    res = compute_importance(c.teacher, c.calib, str(run.dir("1_analyze")), (method,), seed=c.seed,
                             metric_cases=c.metric_cases, metric_guidance=c.cfg_scale, data_free=c.data_free,
                             data=run.data, **real)
    return {"method": method, "files": {k: str(v) for k, v in res.get("files", {}).items()}}


def stage_plan(run: Run) -> dict:
    from fastlight.analyze.plans import make_plan

    c = run.cfg
    d = run.dir("1_analyze")
    importance, kind = {"vdmini": (d / "importance_metric.json", "depth"),
                        "lightning": (d / "taylor.json", "width")}.get(c.method, (d / "importance.json", "depth"))
    plan = make_plan(str(importance), c.teacher, c.prune_ratio, str(run.plan), kind)
    return {"kind": kind, "drop_blocks": list(plan.drop_blocks) if kind == "depth" else None,
            "removed_fraction": plan.achieved_ratio}


def stage2_recipe(c: RunConfig) -> str:
    return {"fastlightgen": "dpp", "lightning": "align"}.get(c.method, "icmd")


def stage2_config(run: Run, out: Path | None = None, plan: Path | None = None, **over):
    """(recipe, config) of Stage II: the run's recipe and `stage2:` settings, into `out` (default RUN/3_stage2)
    on `plan` (default the run's), `over` replacing settings (an ablation's one changed setting)."""
    c = run.cfg
    recipe = stage2_recipe(c)
    base = {"out": str(out or run.dir("3_stage2")), "teacher": c.teacher, "plan": str(plan or run.plan),
            "seed": c.seed, "threads": c.threads, **_real_base(run)}
    if c.method == "prune_only":
        base.update(lambda_icd=0.0, lambda_mca=0.0)  # L_task only: a plain fine-tune of the pruned model
    return recipe, _recipe_config(recipe, base, {**c.stage2, **over})


def stage_stage2(run: Run) -> dict:
    recipe, cfg = stage2_config(run)
    out = _train(recipe, cfg)
    return {"recipe": recipe, "model": str(out), "steps": cfg.steps}


def stage3_config(run: Run, out: Path | None = None, teacher: str | None = None, recipe: str | None = None,
                  **over):
    """(recipe, config) of Stage III: the run's recipe and `stage3:` settings, into `out` (default RUN/4_stage3)
    from `teacher` (default the run's: the unpruned teacher for dmd2, else the Stage II model), `over` replacing
    settings."""
    c = run.cfg
    recipe = recipe or ("fastlightgen" if c.method == "fastlightgen" else "dmd2")
    if teacher is None:
        teacher = c.teacher if c.method == "dmd2" else str(run.stage2_model)
    base = {"out": str(out or run.dir("4_stage3")), "teacher": teacher, "seed": c.seed, "threads": c.threads,
            **_real_base(run)}
    return recipe, _recipe_config(recipe, base, {**c.stage3, **over})


def _real_base(run: Run) -> dict:
    """What a training stage takes from the run beyond the Shapes defaults: the data source, and for a
    pipeline teacher its scheduler's shift (the noise levels it was trained at)."""
    base = {} if run.data is None else {"data": run.data}
    if run.pipeline:
        base["shift"] = teacher_shift(run.cfg)
    return base


def teacher_shift(c: RunConfig) -> float:
    """The flow shift of the pipeline teacher's scheduler (UniPC flow_shift / FlowMatchEuler shift)."""
    from fastlight.data.synthesize import pipeline_shift

    return pipeline_shift(teacher_folder(c))


def stage_stage3(run: Run) -> dict:
    recipe, cfg = stage3_config(run)
    out = _train(recipe, cfg)
    return {"recipe": recipe, "model": str(out), "steps": cfg.steps, "timesteps": list(cfg.timesteps)}


def sampling_of(model_dir: Path | str, c: RunConfig) -> SamplerSpec:
    """How a model samples in a run: a few-step student with its own sampler.json; an Euler model
    (the teacher, a Stage-II-only student) with its own sampler at the run's teacher_steps and cfg_scale."""
    folder = resolve_model_path(model_dir)
    if (folder / "model_index.json").is_file():  # a pipeline teacher: Euler with its scheduler's shift
        from fastlight.data.synthesize import pipeline_shift

        return SamplerSpec.euler(c.teacher_steps, c.cfg_scale, pipeline_shift(folder))
    own, _ = own_sampler(folder)
    if own.kind == "few_step":
        return own
    return override(own, num_steps=c.teacher_steps, guidance=c.cfg_scale)


def student_sampling(run: Run) -> SamplerSpec:
    return sampling_of(run.student, run.cfg)


def teacher_eval_dir(c: RunConfig) -> str:
    return f"evaluate/teacher_{c.teacher_steps}steps_cfg{c.cfg_scale:g}"


def student_eval_dir(run: Run) -> str:
    return f"evaluate/{run.cfg.method}_student_{student_sampling(run).num_steps}steps"


def stage_evaluate(run: Run) -> dict:
    """ShapesBench of teacher and student on the same `eval_cases` TEST cases and noise: each score
    with its 95% bootstrap interval, and the paired interval of student - teacher."""
    from fastlight.shapes.bench import evaluate_model, paired_intervals, score_interval

    c = run.cfg
    teacher = evaluate_model(c.teacher, str(run.root / teacher_eval_dir(c)), sampling_of(c.teacher, c),
                             num_cases=c.eval_cases, seed=c.seed, split="test")
    student = evaluate_model(str(run.student), str(run.root / student_eval_dir(run)), student_sampling(run),
                             num_cases=c.eval_cases, seed=c.seed, split="test")
    out = {"teacher_score": teacher["score"], "student_score": student["score"],
           "teacher_direction": teacher["parts"].get("direction"), "student_direction": student["parts"].get("direction"),
           "num_cases": c.eval_cases, "split": "test"}
    if c.eval_cases >= 2:
        out["teacher_interval"] = score_interval(teacher).to_json()
        out["student_interval"] = score_interval(student).to_json()
        out["difference"] = paired_intervals(student, teacher)["score"].to_json()
    return out


def bench_spec(model: Path | str, sampling: SamplerSpec, skip=()) -> str:
    """A `fastlight bench` model spec that runs `model` with the sampler `sampling` (and `skip`)."""
    spec = f"{model}:sampler={sampling.kind},steps={sampling.num_steps},guidance={sampling.guidance:g}"
    if sampling.kind == "euler":
        spec += f",shift={sampling.shift:g}"
    else:
        spec += ",timesteps=" + "+".join(f"{t:g}" for t in sampling.timesteps)
    if skip:
        spec += ",skip=" + "+".join(str(i) for i in skip)
    return spec


def bench_specs(run: Run) -> list[str]:
    c = run.cfg
    return [bench_spec(c.teacher, sampling_of(c.teacher, c)), bench_spec(run.student, student_sampling(run))]


def stage_bench(run: Run) -> dict:
    from fastlight.evaluate.bench import bench_models

    rows = bench_models(bench_specs(run), repeats=run.cfg.bench_repeats, warmup=1,
                        out_json=str(run.dir("bench") / "bench.json"), seed=run.cfg.seed)
    return {"teacher_s": rows[0]["time_s"]["median"], "student_s": rows[1]["time_s"]["median"],
            "speedup": rows[0]["time_s"]["median"] / rows[1]["time_s"]["median"],
            "teacher_denoise_s": rows[0]["denoise_s"], "student_denoise_s": rows[1]["denoise_s"]}


def stage_report(run: Run) -> dict:
    from fastlight.report.report import build_report

    report = build_report(run.root, run.dir("report"), title=f"fastlight run: {run.cfg.method} ({run.cfg.preset})",
                          baseline=teacher_eval_dir(run.cfg), progress=False)
    return {"markdown": str(report.markdown), "html": str(report.html)}


# ---- the real-model stages (a diffusers pipeline teacher) ------------------------------------------

def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def stage_data(run: Run) -> dict:
    """0_data: the teacher pipeline generates latent shards from the `synthesize:` prompts (resumable)."""
    from fastlight.data.synthesize import synthesize

    c, o = run.cfg, synth_options(run.cfg)
    index = synthesize(teacher_folder(c), out_dir=run.shards, seed=c.seed, device=_device(), **o)
    return {"shards": str(run.shards), "num_samples": index["num_samples"], "sampler": index["synthesize"]["settings"]["sampler"]}


def stage_export(run: Run) -> dict:
    """export: the student as a complete stock diffusers pipeline folder (the teacher's VAE, text encoder,
    tokenizer; a scheduler set to the student's timesteps)."""
    from fastlight.export.to_diffusers import export_diffusers

    if run.export_pipeline.exists():  # left by an export that stopped before this stage was marked done
        shutil.rmtree(run.export_pipeline)
    out = export_diffusers(str(run.student), str(run.export_pipeline))
    info = json.loads((Path(out) / "fastlight_export.json").read_text())
    summary = {"pipeline": str(out), "class": info.get("pipeline"), "call": info.get("call"), "params": info.get("params")}
    light = run.light_decoder()
    if light is not None:  # the same pipeline with the light decoder as its vae
        from fastlight.export.to_diffusers import export_light_decoder

        folder = export_light_decoder(out, light, run.export_light, overwrite=True)
        summary["light_pipeline"] = str(folder)
        summary["light_vae"] = json.loads((folder / "fastlight_export.json").read_text())["vae"]
    return summary


STUDENT_POOL_FILE = "student_latents.safetensors"  # decoder.sample_from: student: the stage folder's pool


def decoder_shards(run: Run) -> Path:
    """The run's own latent shards (0_data's or `data=`): the decoder stage's data, or its pool's conditions."""
    spec = run.data or {}
    if spec.get("_component_") != "latents" or not spec.get("path"):
        raise ConfigError(f"the decoder stage distils on latent shards, but data is {spec!r}; give data=SHARDS (a "
                          "shards folder) or synthesize:, or set decoder.enabled=false")
    return Path(spec["path"])


def decoder_latents(run: Run, settings: dict | None = None, out: Path | None = None) -> Path:
    """What the light decoder distils on: the run's shards, or (`sample_from: student`) the student-sample pool
    OUT/student_latents.safetensors (OUT: the stage folder RUN/5_decoder unless given; not sampled here)."""
    from fastlight.decoder.stage import from_student

    shards = decoder_shards(run)
    settings = run.cfg.decoder if settings is None else settings
    if from_student(settings):
        return Path(out or run.dir("5_decoder")) / STUDENT_POOL_FILE
    return shards


def decoder_pool(run: Run, settings: dict, out: Path, progress: bool = True) -> Path:
    """`decoder_latents`, with the student's pool sampled first (reused when it is this student's) when the
    settings ask for `sample_from: student`."""
    from fastlight.decoder.pool import student_pool
    from fastlight.decoder.stage import from_student, student_pool_size

    path = decoder_latents(run, settings, out)  # checks the run's data are latent shards
    if from_student(settings):
        student_pool(run.student, dict(run.data), student_sampling(run), student_pool_size(settings), path,
                     run.cfg.seed, progress)  # conditions from the run's own source (its shards, its checks)
    return path


def decoder_config(run: Run):
    """The DecoderDistillConfig of stage 5_decoder (its training folder is RUN/5_decoder/distill)."""
    from fastlight.decoder.stage import distill_config

    c = run.cfg
    return distill_config(c.decoder, teacher_folder(c) / "vae", decoder_latents(run), run.dir("5_decoder"), c.seed,
                          c.threads)


def decoder_unsupported(run: Run) -> str | None:
    """Why the pruner cannot cut this pipeline's VAE (the stated skip), or None."""
    from fastlight.decoder.stage import unsupported

    return unsupported(teacher_folder(run.cfg) / "vae")


def stage_decoder(run: Run) -> dict:
    """5_decoder: the pipeline's own VAE decoder pruned and distilled on the run's latents (the teacher VAE
    decodes them as the targets); an unsupported VAE class is a stated skip, not an error."""
    from fastlight.decoder.stage import build_light_decoder

    c = run.cfg
    vae = teacher_folder(c) / "vae"
    reason = decoder_unsupported(run)
    if reason:
        print(reason)
        return {"skipped": reason}
    latents = decoder_pool(run, c.decoder, run.dir("5_decoder"))
    summary = build_light_decoder(vae, latents, run.dir("5_decoder"), c.decoder, c.seed, c.threads)
    summary["latents"] = str(latents)
    print(f"light decoder: {summary['decoder_params_before']:,} -> {summary['decoder_params']:,} decoder parameters, "
          f"{summary['steps']} distillation steps ({summary['decoder']})")
    return summary


def _eval_prompts(c: RunConfig) -> tuple[list[str], list[Path] | None, dict]:
    """(prompts, first-frame files or None, {num_frames, height, width}) of the evaluate and bench stages."""
    from fastlight.data.synthesize import pair_images, read_prompts

    o = eval_options(c)
    prompts = read_prompts(o["prompts"])
    images = None if not o.get("images") else pair_images(o["images"], len(prompts))
    return prompts, images, {k: o[k] for k in ("num_frames", "height", "width")}


def teacher_transformer(c: RunConfig) -> Path:
    return teacher_folder(c) / "transformer"


LIGHT_ROW = "student_light"  # the evaluation / bench row of the student + light decoder


def stage_evaluate_pipeline(run: Run) -> dict:
    """Teacher and student sampled on the same prompts and noise, decoded by the teacher's VAE: the Frechet
    distance and motion ratio of the student against the teacher with 95% intervals, the proxies, MP4s. A
    pipeline whose world has an oracle (a plug-in's: the Shapes pipeline's ShapesBench) is evaluated on that
    oracle's first `eval_cases` cases instead of `eval.prompts`, and every row also gets the oracle's score
    with its interval and the paired difference row - teacher (`oracle` in the summary)."""
    from fastlight.evaluate.real import evaluate_oracle_cases, evaluate_on_pipeline, pipeline_oracle

    c = run.cfg
    models = {"teacher": (teacher_transformer(c), sampling_of(c.teacher, c)),
              "student": (run.student, student_sampling(run))}
    light = run.light_decoder()
    extra = {"decoders": {LIGHT_ROW: ("student", light)}} if light is not None else {}
    opts = eval_options(c)
    size = {k: opts[k] for k in VIDEO_KEYS}
    extra["batch_size"] = opts["batch_size"]
    oracle = pipeline_oracle(teacher_folder(c), **size, seed=c.seed)
    if oracle is not None:
        res = evaluate_oracle_cases(teacher_folder(c), models, oracle, c.eval_cases, run.dir("evaluate"), **size,
                                    seed=c.seed, videos=True, progress=True, **extra)
        n = c.eval_cases
    else:
        prompts, images, size = _eval_prompts(c)
        res = evaluate_on_pipeline(teacher_folder(c), models, prompts, run.dir("evaluate"), **size, seed=c.seed,
                                   images=images, videos=True, progress=True, **extra)
        n = len(prompts)
    pair = res["pairs"]["student"]
    out = {"num_prompts": n, **size,
           "frechet_distance": pair["frechet_distance"], "motion_ratio": pair["motion_ratio"],
           "proxy_differences": pair.get("proxy_differences", {}),
           "motion": {name: m.get("motion") for name, m in res["models"].items()},
           "proxies": {name: m.get("proxies") for name, m in res["models"].items()}}
    if light is not None:
        lp = res["pairs"][LIGHT_ROW]
        out["light"] = {"frechet_distance": lp["frechet_distance"], "motion_ratio": lp["motion_ratio"],
                        "proxy_differences": lp.get("proxy_differences", {}),
                        "decoder_psnr_db": res["models"][LIGHT_ROW]["decoder_psnr_db"]}
    if "oracle" in res:
        out["oracle"] = oracle_summary(res["oracle"])
    return out


def oracle_summary(orc: dict) -> dict:
    """The evaluate summary's `oracle`: per row the score with its 95% interval, per row but the teacher the
    paired interval of row - teacher (same cases and noise); the per-case data stay in eval.json."""
    return {"name": orc["name"], "num_cases": orc["num_cases"], "split": orc.get("split"),
            "world": orc.get("world_name"),
            "ideal": orc.get("ideal"),
            "rows": {n: {"score": m["score"], "interval": m.get("interval"), "parts": m.get("parts")}
                     for n, m in orc["models"].items()},
            "differences": {n: p["score"] for n, p in orc["pairs"].items()}}


def stage_bench_pipeline(run: Run) -> dict:
    """The stock teacher pipeline (teacher_steps, cfg_scale) against the exported student pipeline, in one
    process, interleaved: end-to-end and denoise-only speedups side by side."""
    from fastlight.evaluate.pipeline_bench import PipelineEntry, bench_pipelines

    c = run.cfg
    prompts, _, size = _eval_prompts(c)
    entries = [PipelineEntry("teacher", str(teacher_folder(c)), c.teacher_steps, c.cfg_scale),
               PipelineEntry("student", str(run.export_pipeline))]
    light = run.export_light.is_dir() and run.light_decoder() is not None
    if light:  # the third row, in the same interleaved rounds on the same prompts
        entries.append(PipelineEntry(LIGHT_ROW, str(run.export_light)))
    rows = bench_pipelines(entries, prompts, **size, repeats=c.bench_repeats, warmup=1, seed=c.seed,
                           out_json=str(run.dir("bench") / "bench.json"), progress=True)
    t, s = rows[0], rows[1]
    out = {"teacher_s": t["time_s"]["median"], "student_s": s["time_s"]["median"], "speedup": s["speedup"],
           "teacher_denoise_s": t["denoise_s"], "student_denoise_s": s["denoise_s"],
           "denoise_speedup": s["denoise_speedup"],
           "teacher_decode_s": t.get("decode_s"), "student_decode_s": s.get("decode_s")}
    if light:
        lr = rows[2]
        out.update(light_s=lr["time_s"]["median"], light_denoise_s=lr["denoise_s"], light_decode_s=lr.get("decode_s"),
                   light_speedup=lr["speedup"], light_denoise_speedup=lr["denoise_speedup"])
    return out


def _interval(iv: dict | None, fmt: str = ".3g") -> str:
    if not iv:
        return "n/a"
    return f"{iv['estimate']:{fmt}} [{iv['low']:{fmt}}, {iv['high']:{fmt}}]"


ROW_LABELS = {"teacher": "teacher + full decoder", "student": "student + full decoder",
              LIGHT_ROW: "student + light decoder"}


def samples_lines(run: Run, out: Path) -> list[str]:
    """The report's animation: the evaluation's first videos of every row side by side (samples.gif in
    `out`), with its markdown; nothing when the evaluation wrote no videos."""
    from fastlight.report.samples import rows_gif

    ev_file = run.dir("evaluate") / "eval.json"
    if not ev_file.is_file():
        return []
    ev = read_json_object(ev_file, InputError, "re-run the evaluate stage")
    rows = [(ROW_LABELS.get(name, name), [run.dir("evaluate") / v for v in m.get("videos", [])])
            for name, m in ev.get("models", {}).items()]
    rows = [(label, videos) for label, videos in rows if videos and all(v.is_file() for v in videos)]
    if not rows:
        return []
    info = rows_gif(rows, out / "samples.gif")
    return ["## Samples side by side", "",
            "![samples](samples.gif)", "",
            f"The evaluation's first {info['videos_per_row']} videos of every row: the same prompts"
            + (" and first frames" if "oracle" in ev else "") + " and the same noise in each column. "
            f"All videos: `{run.dir('evaluate') / 'videos'}`.", ""]


def stage_report_pipeline(run: Run) -> dict:
    """report.md and a self-contained report.html: the headline, the evaluation (intervals), the bench (both
    speedups), the rows side by side (samples.gif) of a pipeline run."""
    from fastlight.report.html import markdown_page

    state = {"stages": {n: json.loads((run.dir(n) / DONE).read_text()) for n in ("2_plan", "evaluate", "bench")
                        if (run.dir(n) / DONE).exists()}}
    ev, be = state["stages"]["evaluate"]["summary"], state["stages"]["bench"]["summary"]
    lines = [f"# fastlight run: {run.cfg.method} ({run.cfg.preset}) on {run.cfg.teacher}", "",
             headline(run, state), "",
             f"## Evaluation ({ev['num_prompts']} prompts, {ev['num_frames']}x{ev['height']}x{ev['width']}, 95% intervals)",
             "", "| measure | student vs teacher |", "|---|---|",
             f"| Frechet distance (teacher DiT features) | {_interval(ev['frechet_distance'])} |",
             f"| motion ratio (student / teacher) | {_interval(ev['motion_ratio'], '.2f')} |"]
    lines += [f"| {dim} (proxy, student - teacher) | {_interval(iv)} |" for dim, iv in sorted(ev["proxy_differences"].items())]
    lines += ["", "## Bench (stock pipelines, one process, interleaved)", "",
              "| | teacher | student | speedup |", "|---|---|---|---|",
              f"| end to end (s per video) | {be['teacher_s']:.3g} | {be['student_s']:.3g} | {be['speedup']:.1f}x |",
              f"| denoise only (s per video) | {be['teacher_denoise_s']:.3g} | {be['student_denoise_s']:.3g} | "
              f"{be['denoise_speedup']:.1f}x |", ""]
    lines += side_by_side(run, ev, be)
    lines += oracle_lines(ev.get("oracle"))
    out = make_dir(run.dir("report"), "report folder")
    lines += samples_lines(run, out)
    lines += [f"Videos: `{run.dir('evaluate')}`; stock student pipeline: `{run.export_pipeline}`"
              + (f"; with the light decoder: `{run.export_light}`" if "light_s" in be else "") + ".", ""]
    md = atomic_write_text(out / "report.md", "\n".join(lines))
    page = atomic_write_text(out / "report.html", markdown_page(lines[0].lstrip("# "), lines, out))
    return {"markdown": str(md), "html": str(page)}


def oracle_lines(orc: dict | None) -> list[str]:
    """The report's oracle table (a pipeline whose world has one): each row's score with its 95% interval and
    the paired difference row - teacher on the same cases and noise; nothing without an oracle."""
    if not orc:
        return []
    ideal = orc.get("ideal") or {}
    out = [f"## {orc['name']} ({orc['num_cases']} {orc.get('split') or 'test'} cases, world {orc.get('world')}, "
           "95% intervals)", "", "| row | score | row - teacher (paired) |", "|---|---|---|"]
    for name, row in orc["rows"].items():
        diff = orc["differences"].get(name)
        score = _interval(row["interval"], ".4f") if row.get("interval") else f"{row['score']:.4f} (one case: no interval)"
        out.append(f"| {name} | {score} | {'0 (reference)' if diff is None else _interval(diff, '+.4f')} |")
    if ideal.get("score") is not None:
        out.append(f"| the world's own clips (upper bound) | {ideal['score']:.4f} | |")
    return out + [""]


def _secs(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def side_by_side(run: Run, ev: dict, be: dict) -> list[str]:
    """The report's rows side by side: teacher + full decoder, student + full decoder and (with stage 5_decoder)
    student + light decoder; quality with 95% intervals, time per video end to end / denoise / decode and the
    speedups over the teacher. A skipped decoder stage says why."""
    dec = json.loads((run.dir("5_decoder") / DONE).read_text())["summary"] if (run.dir("5_decoder") / DONE).exists() else {}
    full_params = f"{dec['decoder_params_before']:,}" if dec.get("decoder_params_before") else "full"
    light = ev.get("light") if "light_s" in be else None
    rows = [("teacher + full decoder", full_params, "0 (reference)", "1 (reference)", "-", be["teacher_s"], 1.0,
             be["teacher_denoise_s"], 1.0, be.get("teacher_decode_s")),
            ("student + full decoder", full_params, _interval(ev["frechet_distance"]), _interval(ev["motion_ratio"], ".2f"),
             "-", be["student_s"], be["speedup"], be["student_denoise_s"], be["denoise_speedup"], be.get("student_decode_s"))]
    if light is not None:
        rows.append(("student + light decoder", f"{dec['decoder_params']:,}", _interval(light["frechet_distance"]),
                     _interval(light["motion_ratio"], ".2f"), _interval(light["decoder_psnr_db"], ".1f"), be["light_s"],
                     be["light_speedup"], be["light_denoise_s"], be["light_denoise_speedup"], be.get("light_decode_s")))
    out = ["## Side by side (one evaluation, one interleaved bench)", "",
           "| | decoder params | Frechet distance to the teacher | motion ratio | decoder PSNR vs full (dB) | "
           "end to end (s) | speedup | denoise (s) | speedup | decode (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {name} | {params} | {fd} | {mr} | {psnr} | {_secs(e2e)} | {sp:.1f}x | {_secs(dn)} | {dsp:.1f}x | "
            f"{_secs(dc)} |" for name, params, fd, mr, psnr, e2e, sp, dn, dsp, dc in rows]
    out.append("")
    if light is not None:
        out += ["The Frechet distance is measured on the latents (the teacher DiT's features), which the decoder does "
                "not change: the light decoder's quality is its PSNR against the full decoder on the same latents and "
                "its motion ratio.", ""]
    elif dec.get("skipped"):
        out += [dec["skipped"] + ".", ""]
    return out


ETA_PRIOR_S = 120.0  # seconds of "as estimated" the rescale starts from (`eta_scale`)


def eta_scale(wall_done: float, est_done: float) -> float:
    """The factor on the remaining stages' estimates: measured / estimated over the finished stages, shrunk
    towards 1 by ETA_PRIOR_S of each. Why: a 3-s Stage I estimated at 80 s once turned a 10-minute run's
    "~25 min left" into "~1 min left"; the ratio of a few seconds is noise, of many minutes evidence."""
    return (wall_done + ETA_PRIOR_S) / (est_done + ETA_PRIOR_S)


def _train_est(overrides: dict, default_steps: int, s_per_step: float) -> float:
    return float(overrides.get("steps", default_steps)) * s_per_step


def stages(c: RunConfig) -> list[Stage]:
    """The method's stages with cost estimates (seconds, this 2-core CPU, measured 2026-11-26)."""
    pipeline = is_pipeline_teacher(c)
    out = []
    if pipeline and c.synthesize:
        o = synth_options(c)
        n = _num_prompts(o.get("prompts")) * int(o.get("samples_per_prompt", 1))
        est = n * o["num_steps"] * 2 * _video_cost(o) + 5.0
        out.append(Stage("0_data", f"data: the teacher generates {n} latent videos from prompts", stage_data, est))
    if c.method != "dmd2":
        what = {"vdmini": "Stage I: metric-drop importance (VDMini)", "lightning": "Stage I: Taylor width saliency"}
        # ELBO importance of a pipeline teacher: ~4 teacher forwards a calibration video (3.5 s for the demo's 32)
        per_calib = 4 * _video_cost(synth_options(c)) if pipeline and c.method == "fastlightgen" else 2.5
        est = 16 * c.metric_cases * 0.6 if c.method == "vdmini" else per_calib * c.calib * (2 if c.data_free else 1)
        out.append(Stage("1_analyze", what.get(c.method, "Stage I: ELBO block importance"), stage_analyze, est))
        out.append(Stage("2_plan", f"plan: remove {c.prune_ratio:.0%} of the parameters", stage_plan, 1.0))
        recipe = stage2_recipe(c)
        per_step = {"dpp": 1.0, "icmd": 1.2, "align": 1.0}[recipe] * float(c.stage2.get("batch_size", 16)) / 16
        if pipeline:  # ~9 teacher forwards of a video a step at batch 16 (the demo's dpp: ~0.22 s a step alone)
            per_step *= 9 * _video_cost(synth_options(c))
        out.append(Stage("3_stage2", f"Stage II: {recipe}", stage_stage2, _train_est(c.stage2, 300, per_step)))
    if c.method in ("fastlightgen", "lightning", "dmd2"):
        recipe = "fastlightgen" if c.method == "fastlightgen" else "dmd2"
        per_step = 0.3 * float(c.stage3.get("batch_size", 4)) / 4
        out.append(Stage("4_stage3", f"Stage III: {recipe} DMD", stage_stage3, _train_est(c.stage3, 300, per_step)))
    if pipeline and has_decoder_stage(c):
        out.append(_decoder_stage(c))
    if pipeline:
        return out + _pipeline_tail(c)
    evals = c.eval_cases * (c.teacher_steps * 2 + 50) * 0.012
    out.append(Stage("evaluate", f"ShapesBench: teacher and student on {c.eval_cases} test cases", stage_evaluate, evals))
    out.append(Stage("bench", "end-to-end time per video, side by side", stage_bench, (c.bench_repeats + 1) * 2.5))
    out.append(Stage("report", "report (Markdown + HTML)", stage_report, 10.0))
    return out


def _fast_depth(d: dict) -> str:
    """The FastWanDecoder depth keys that differ from the defaults, for the stage's description ('' if none)."""
    from fastlight.decoder.distill import DecoderDistillConfig

    keys = {"fast_latent_blocks": "latent blocks", "fast_spatial_blocks": "blocks per level",
            "fast_time_levels": "time-mixing levels"}
    return "".join(f", {int(d[k])} {name}" for k, name in keys.items()
                   if k in d and int(d[k]) != getattr(DecoderDistillConfig, k))


def _decoder_stage(c: RunConfig) -> Stage:
    """5_decoder with its estimate: calibration decodes plus, per distillation step and video, a teacher decode
    and a student decode + backward (~3 decodes), a decode costing about one teacher forward at that size."""
    from fastlight.decoder.distill import DecoderDistillConfig
    from fastlight.decoder.stage import unsupported

    vae = teacher_folder(c) / "vae"
    reason = unsupported(vae) if (vae / "config.json").is_file() else None  # the teacher may not be here (dry run)
    if reason:
        return Stage("5_decoder", f"{reason}: skipped", stage_decoder, 0.5)
    d = c.decoder
    steps, batch = int(d.get("steps", DecoderDistillConfig.steps)), int(d.get("batch_size", DecoderDistillConfig.batch_size))
    per_video = _video_cost(synth_options(c))
    if d.get("student") == "fast":  # no pruning; the student's own decode is cheap (~1/28 of the teacher's)
        # a teacher decode ~12 teacher forwards (Shapes, measured 2026-12-02); cached targets: one per pool latent
        draws = steps * batch
        decodes = min(draws, int(d.get("pool_size") or draws)) if d.get("cache_targets") else draws
        est = 5.0 + decodes * 12 * per_video + draws * 1.0 * per_video
        what = (f"light decoder: a FastWanDecoder (width {int(d.get('fast_width', DecoderDistillConfig.fast_width))}"
                f"{_fast_depth(d)}) distilled from scratch, {steps} steps on the run's latents")
        return Stage("5_decoder", what, stage_decoder, est)
    est = 5.0 + int(d.get("calib", 16)) * per_video + steps * batch * 3 * per_video
    what = (f"light decoder: prune {d.get('prune_ratio', 0.75):.0%} of the VAE decoder, distil {steps} steps on the "
            "run's latents")
    return Stage("5_decoder", what, stage_decoder, est)


def _num_prompts(path) -> int:
    """Prompts in a prompts file (0 when it cannot be read yet: the stage itself says why)."""
    from fastlight.data.synthesize import read_prompts

    try:
        return len(read_prompts(path))
    except (FastlightError, OSError, TypeError, UnicodeDecodeError):
        return 0


def _video_cost(o: dict) -> float:
    """Rough seconds of one teacher forward on one video of o's size on the reference CPU: ~1e-5 s per
    pixel-frame at the tiny pipelines' widths (a real 1.3B DiT needs a GPU: the estimate is then only a scale)."""
    return 0.02 + 1e-5 * o["num_frames"] * o["height"] * o["width"] / 64


def _has_oracle(c: RunConfig) -> bool:
    """The pipeline teacher's world has an oracle (evaluate then scores its cases); False where the teacher is
    not here or the oracle refuses the settings (the evaluate stage itself says why)."""
    from fastlight.evaluate.real import pipeline_oracle

    if not (teacher_folder(c) / "model_index.json").is_file():
        return False
    size = {k: eval_options(c)[k] for k in VIDEO_KEYS}
    try:
        return pipeline_oracle(teacher_folder(c), **size, seed=c.seed) is not None
    except FastlightError:
        return False


def _pipeline_tail(c: RunConfig) -> list[Stage]:
    """export -> evaluate -> bench -> report of a pipeline teacher, with rough estimates."""
    o = eval_options(c)
    oracle = _has_oracle(c)
    n = c.eval_cases if oracle else _num_prompts(o.get("prompts"))
    per_video = _video_cost(o)
    evals = n * (c.teacher_steps * 2 + 8) * per_video + 10.0
    # bench: every round the teacher on each bench prompt, each cheaper row up to half its time (balanced rounds:
    # pipeline_bench's max_calls); student rows: the full decoder's and, with a decoder stage, the light one's
    rows = 3 if has_decoder_stage(c) else 2
    teacher_round = max(_num_prompts(o.get("prompts")), 1) * (c.teacher_steps * 2 + 4) * per_video
    bench = (c.bench_repeats + 1) * teacher_round * (1 + 0.5 * (rows - 1)) + 10.0
    return [Stage("export", "export: the student as a stock diffusers pipeline folder", stage_export, 5.0),
            Stage("evaluate", f"evaluate: teacher and student on {n} {'oracle cases' if oracle else 'prompts'} "
                              "(Frechet distance, motion, proxies)", stage_evaluate_pipeline, evals),
            Stage("bench", "bench: stock teacher pipeline vs the exported student, end to end and denoise only",
                  stage_bench_pipeline, bench),
            Stage("report", "report (Markdown)", stage_report_pipeline, 2.0)]


# ---- the driver ------------------------------------------------------------------------------------

def check_stage_configs(run: Run, names: list[str]) -> None:
    """Build the training stages' configs up front, so a bad `stage2.`/`stage3.` key fails before any work."""
    from fastlight.distill.dmd import check_dmd_config
    from fastlight.train.loop import check_loop_config

    if "3_stage2" in names:
        check_loop_config(stage2_config(run)[1])
    if "4_stage3" in names:
        cfg = stage3_config(run)[1]
        check_loop_config(cfg)
        check_dmd_config(cfg)
    if "5_decoder" in names and decoder_unsupported(run) is None:
        check_loop_config(decoder_config(run))


def write_stage_configs(run: Run, names: list[str]) -> None:
    """RUN/3_stage2/config.yaml and RUN/4_stage3/config.yaml, the training stages' resolved recipe configs,
    before they run: what `accelerate launch ... -m fastlight.cli train --recipe dpp RUN/3_stage2/config.yaml`
    trains on many GPUs (the loop writes the same file when it starts; a later `fastlight run` resumes the
    finished checkpoint instead of training again)."""
    from fastlight.config import save_config

    for name, build in (("3_stage2", stage2_config), ("4_stage3", stage3_config)):
        if name in names and not (run.dir(name) / DONE).exists():
            save_config(build(run)[1], run.dir(name))


def check_only(run: Run, plan: list[Stage], only: list[str] | None) -> None:
    """`--only`: known stage names, at least one, and every earlier stage complete or also named."""
    if only is None:
        return
    names = [s.name for s in plan]
    if not only:
        raise InputError(f"--only names no stage; give a comma list of stages, e.g. --only {names[-1]} "
                         f"(stages of {run.cfg.method}: {', '.join(names)})")
    for n in only:
        if n not in names:
            raise InputError(f"--only: unknown stage {n!r} for method {run.cfg.method}; stages: {', '.join(names)}")
    for n in only:
        for earlier in reversed(names[:names.index(n)]):  # the nearest missing stage is the one to name
            if earlier not in only and not (run.dir(earlier) / DONE).exists():
                raise InputError(f"--only {n}: stage {earlier} has not run in {run.root}; run it first "
                                 f"(--only {earlier}, or without --only to run every stage in order)")


def fmt_duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _status_table(plan: list[Stage], state: dict, scale: float, current: str | None):
    from rich.table import Table

    t = Table(title="fastlight run", show_lines=False)
    for col in ("#", "stage", "what", "status", "time"):
        t.add_column(col)
    for i, st in enumerate(plan, 1):
        rec = state["stages"].get(st.name, {})
        if rec.get("done"):
            status, tm = "[green]done[/]", fmt_duration(rec["wall_s"])
        elif st.name == current:
            status, tm = "[yellow]running[/]", f"ETA {fmt_duration(st.est_s * scale)}"
        else:
            status, tm = "pending", f"~{fmt_duration(st.est_s * scale)}"
        t.add_row(str(i), st.name, st.what, status, tm)
    return t


def _band(iv: dict | None) -> str:
    return f" [{iv['low']:.3f}, {iv['high']:.3f}]" if iv else ""


def evaluation_note(ev: dict, default_cases: int | None = None) -> str:
    """'student - teacher +0.003 [-0.010, +0.016] (paired, 95%, 64 test cases; fewer than the default
    320: intervals about 2x wider)'."""
    default_cases = default_cases or RunConfig.eval_cases
    n = ev.get("num_cases")
    d = ev.get("difference")
    if n is None:  # a run from before intervals: say so rather than print bare numbers as if exact
        return "no intervals (evaluated before ShapesBench 2; re-run the evaluate stage)"
    text = (f"student - teacher {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] (paired, 95%, " if d
            else "(no interval: 1 case, ")
    text += f"{n} {ev.get('split', 'test')} cases"
    if n < default_cases:
        text += f"; fewer than the default {default_cases}: intervals about {(default_cases / n) ** 0.5:.1f}x wider"
    return text + ")"


def headline(run: Run, state: dict) -> str:
    """One line: the student's quality against the teacher with intervals, and its speedups."""
    ev, be = state["stages"].get("evaluate", {}).get("summary"), state["stages"].get("bench", {}).get("summary")
    if not ev or not be:
        return "incomplete run"
    s = student_sampling(run)
    pruned = ""
    plan = state["stages"].get("2_plan", {}).get("summary") or {}
    if plan.get("removed_fraction") is not None:
        pruned = f", {plan['removed_fraction']:.0%} of the parameters removed"
    student = f"{run.cfg.method} student ({s.num_steps} {s.kind.replace('_', '-')} steps{pruned})"
    if "frechet_distance" in ev:
        return pipeline_headline(student, ev, be)
    return (f"{student}: ShapesBench "
            f"{ev['student_score']:.3f}{_band(ev.get('student_interval'))} vs teacher {ev['teacher_score']:.3f}"
            f"{_band(ev.get('teacher_interval'))}, {evaluation_note(ev)}; {be['speedup']:.1f}x faster end to end "
            f"({be['student_s'] * 1000:.0f} ms vs {be['teacher_s']:.2f} s per video)")


def pipeline_headline(student: str, ev: dict, be: dict) -> str:
    """The headline of a pipeline run: Frechet distance and motion ratio with their 95% intervals (n prompts),
    the end-to-end and the denoise-only speedup side by side."""
    line = (f"{student}: Frechet distance to the teacher {_interval(ev['frechet_distance'])}, motion ratio "
            f"{_interval(ev['motion_ratio'], '.2f')} (student / teacher; 95%, {ev['num_prompts']} prompts); "
            f"{be['speedup']:.1f}x faster end to end ({be['student_s']:.3g} s vs {be['teacher_s']:.3g} s per video), "
            f"{be['denoise_speedup']:.1f}x denoise only")
    if "light_s" in be and ev.get("light"):
        line += (f"; with the light decoder {be['light_speedup']:.1f}x end to end ({be['light_s']:.3g} s per video), "
                 f"decoder PSNR vs full {_interval(ev['light']['decoder_psnr_db'], '.1f')} dB")
    orc = ev.get("oracle")
    if orc and "student" in orc["rows"]:
        rows = orc["rows"]
        line += (f"; {orc['name']} student {_interval(rows['student'].get('interval'), '.3f')} vs teacher "
                 f"{_interval(rows['teacher'].get('interval'), '.3f')}, paired "
                 f"{_interval(orc['differences'].get('student'), '+.3f')} ({orc['num_cases']} test cases)")
    return line


def run_pipeline(cfg: RunConfig, only: list[str] | None = None, keep: frozenset = frozenset(),
                 keep_nested: dict | None = None) -> dict:
    """Run (or continue) every stage of cfg.method in cfg.out; returns run.json's content.
    `only`: run just these stages (the others must be complete or are skipped). The run folder is
    locked for the whole run (fastlight/train/lock.py): a second `fastlight run` on it is refused."""
    cfg = resolve(cfg, keep, keep_nested)
    if is_pipeline_teacher(cfg) and not teacher_folder(cfg).exists():
        raise MissingFileError(f"teacher {cfg.teacher} does not exist; pass teacher=PIPELINE (a diffusers pipeline "
                               "folder, e.g. Wan2.1-T2V-1.3B-Diffusers) or preset=tiny for the tiny test pipeline")
    run = Run(cfg)
    plan = stages(cfg)
    # every check before anything is written (the lock creates the folder): a refused run leaves no
    # config.yaml to block the corrected rerun
    check_stage_configs(run, [s.name for s in plan])
    check_only(run, plan, only)
    with RunLock(cfg.out, "run folder (out=)"):
        return _run_stages(run, plan, only)


# settings that change how a stage works but not what it writes: a finished run folder continues under a new
# value (out: where the folder is; eval.batch_size: evaluate samples with one generator per video, so its
# numbers do not depend on the batching)
RESULT_FREE_KEYS = ("out",)
RESULT_FREE_SUBKEYS = {"eval": ("batch_size",)}


def _result_keys(config: dict) -> dict:
    """A resolved config without the result-free keys: what two runs in one folder must agree on."""
    kept = {k: v for k, v in config.items() if k not in RESULT_FREE_KEYS}
    for key, subkeys in RESULT_FREE_SUBKEYS.items():
        if isinstance(kept.get(key), dict):
            kept[key] = {k: v for k, v in kept[key].items() if k not in subkeys}
    return kept


def _run_stages(run: Run, plan: list[Stage], only: list[str] | None) -> dict:
    import torch
    from rich.console import Console

    from fastlight.config import save_config

    cfg = run.cfg
    torch.set_num_threads(cfg.threads)
    console = Console()
    make_dir(run.root, "run folder (out=)")
    old = run.root / "config.yaml"
    if old.exists():
        import yaml

        prev, now = _result_keys(yaml.safe_load(old.read_text())), _result_keys(dataclasses.asdict(cfg))
        diff = sorted(k for k in set(prev) | set(now) if prev.get(k) != now.get(k))
        if diff:
            raise ConfigError(f"{run.root} holds a run with a different config ({', '.join(diff[:4])} differ); "
                              f"use a new out=... or delete the folder")
    save_config(cfg, run.root)
    write_stage_configs(run, [st.name for st in plan])
    state = {"method": cfg.method, "preset": cfg.preset, "out": str(run.root), "stages": {}}
    for st in plan:
        marker = run.dir(st.name) / DONE
        if marker.exists():
            state["stages"][st.name] = json.loads(marker.read_text())
    est_done = sum(st.est_s for st in plan if state["stages"].get(st.name, {}).get("done"))
    wall_done = sum(state["stages"][st.name]["wall_s"] for st in plan if state["stages"].get(st.name, {}).get("done"))
    for i, st in enumerate(plan, 1):
        if state["stages"].get(st.name, {}).get("done"):
            continue
        if only and st.name not in only:
            continue
        scale = eta_scale(wall_done, est_done)
        remaining = sum(s.est_s for s in plan if not state["stages"].get(s.name, {}).get("done")) * scale
        console.print(_status_table(plan, state, scale, st.name))
        console.rule(f"[bold]{i}/{len(plan)} {st.name}[/]: {st.what} (ETA {fmt_duration(st.est_s * scale)}, "
                     f"run ~{fmt_duration(remaining)} left)")
        t0 = time.time()
        summary = st.run(run)
        rec = {"done": True, "wall_s": round(time.time() - t0, 2), "est_s": round(st.est_s, 1), "summary": summary}
        run.dir(st.name).mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.dir(st.name) / DONE, rec)
        state["stages"][st.name] = rec
        est_done += st.est_s
        wall_done += rec["wall_s"]
        atomic_write_json(run.root / "run.json", {**state, "headline": headline(run, state)})
    console.print(_status_table(plan, state, 1.0, None))
    state["headline"] = headline(run, state)
    state["total_wall_s"] = round(sum(r.get("wall_s", 0) for r in state["stages"].values()), 1)
    atomic_write_json(run.root / "run.json", state)
    return state


def run_from_config(config_path: str, overrides: list[str], only: list[str] | None = None) -> dict:
    """`fastlight run RECIPE.yaml key=value ...`: the run config from the file and the overrides
    (`stage2.KEY=VALUE` / `stage3.KEY=VALUE` into the stage mappings; every command-line value beats
    the preset), then `run_pipeline`; returns run.json's content."""
    from fastlight.config import load_config, parse_overrides

    plain, nested = split_overrides(overrides)
    cfg = load_config(RunConfig, config_path, plain)
    return run_pipeline(cfg, only, frozenset(parse_overrides(plain)), nested)
