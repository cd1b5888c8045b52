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
stage the remaining estimates are rescaled by (measured / estimated) so far.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fastlight.config import check_ranges
from fastlight.diffusion.spec import SamplerSpec, override, own_sampler
from fastlight.errors import ConfigError, InputError, make_dir
from fastlight.fileio import atomic_write_json
from fastlight.models.load import resolve_model_path
from fastlight.train.lock import RunLock

METHODS = ("fastlightgen", "vdmini", "lightning", "dmd2", "prune_only")
PRESETS = ("quick", "full")
DONE = ".done.json"


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
    eval_cases: int = 320  # ShapesBench TEST cases (prompt, first frame, noise), the same for every model;
    # 320 gives a 95% half-width of about 0.0095 on the teacher's score; fewer is said in the headline
    teacher_steps: int = 50  # the teacher's Euler steps (and a Stage-II-only student's)
    cfg_scale: float = 4.0  # the teacher's CFG
    bench_repeats: int = 3
    seed: int = 0
    threads: int = 2
    presets: dict = field(default_factory=dict)  # {quick: {key: value, stage2: {...}}, full: {...}}


def resolve(cfg: RunConfig, keep: frozenset = frozenset(), keep_nested: dict | None = None) -> RunConfig:
    """Apply cfg.presets[cfg.preset] over cfg (the stage mappings merged key by key) and check it.
    `keep` (top-level keys) and `keep_nested` ({"stage2": {...}}) came from the command line: they win
    over the preset."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if cfg.preset not in PRESETS:
        raise ConfigError(f"preset must be quick or full, got {cfg.preset!r}")
    preset = dict(cfg.presets.get(cfg.preset) or {})
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"presets", "preset"}
    unknown = sorted(set(preset) - fields)
    if unknown:
        raise ConfigError(f"preset {cfg.preset!r} sets unknown key(s) {unknown}; valid keys are {sorted(fields)}")
    values = dataclasses.asdict(cfg)
    for k, v in preset.items():
        if k in keep:
            continue
        values[k] = {**values[k], **v} if k in ("stage2", "stage3") else v
    for k, v in (keep_nested or {}).items():
        values[k] = {**values[k], **v}
    out = RunConfig(**values)
    check_ranges(out, f"run config (with preset {cfg.preset!r})")  # the preset's values too
    if not 0 < out.prune_ratio < 1:
        raise ConfigError(f"prune_ratio must be in (0, 1), got {out.prune_ratio}")
    for key in ("calib", "eval_cases", "teacher_steps", "bench_repeats"):
        if getattr(out, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(out, key)}")
    return out


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, dict]]:
    """`key=value` for the run config; `stage2.key=value` / `stage3.key=value` into those mappings."""
    import yaml

    plain, nested = [], {"stage2": {}, "stage3": {}}
    for o in overrides:
        key, sep, value = o.partition("=")
        section, dot, sub = key.partition(".")
        if sep and dot and section in nested:
            nested[section][sub.strip()] = yaml.safe_load(value) if value.strip() else ""
        elif sep and dot:
            raise ConfigError(f"override {o!r}: only stage2.KEY=VALUE and stage3.KEY=VALUE may be dotted")
        else:
            plain.append(o)
    return plain, nested


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


def _recipe_config(recipe: str, base: dict, overrides: dict):
    """The recipe's typed config from `base` (set by the pipeline) and the user's stage mapping."""
    from fastlight.config import from_dict
    from fastlight.train.entry import available_recipes

    config_cls, _ = available_recipes()[recipe]
    return from_dict(config_cls, {**base, **overrides}, f"stage config ({recipe})")


def _train(recipe: str, cfg) -> Path:
    from fastlight.train.entry import run_recipe

    return run_recipe(recipe, cfg, progress=True)


def stage_analyze(run: Run) -> dict:
    from fastlight.analyze.importance import compute_importance

    c = run.cfg
    method = {"vdmini": "metric", "lightning": "taylor"}.get(c.method, "elbo")
    res = compute_importance(c.teacher, c.calib, str(run.dir("1_analyze")), (method,), seed=c.seed,
                             metric_cases=c.metric_cases, metric_guidance=c.cfg_scale, data_free=c.data_free)
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


def stage2_config(run: Run):
    c = run.cfg
    recipe = stage2_recipe(c)
    base = {"out": str(run.dir("3_stage2")), "teacher": c.teacher, "plan": str(run.plan), "seed": c.seed,
            "threads": c.threads}
    if c.method == "prune_only":
        base.update(lambda_icd=0.0, lambda_mca=0.0)  # L_task only: a plain fine-tune of the pruned model
    return recipe, _recipe_config(recipe, base, c.stage2)


def stage_stage2(run: Run) -> dict:
    recipe, cfg = stage2_config(run)
    out = _train(recipe, cfg)
    return {"recipe": recipe, "model": str(out), "steps": cfg.steps}


def stage3_config(run: Run):
    c = run.cfg
    recipe = "fastlightgen" if c.method == "fastlightgen" else "dmd2"
    teacher = c.teacher if c.method == "dmd2" else str(run.stage2_model)
    base = {"out": str(run.dir("4_stage3")), "teacher": teacher, "seed": c.seed, "threads": c.threads}
    return recipe, _recipe_config(recipe, base, c.stage3)


def stage_stage3(run: Run) -> dict:
    recipe, cfg = stage3_config(run)
    out = _train(recipe, cfg)
    return {"recipe": recipe, "model": str(out), "steps": cfg.steps, "timesteps": list(cfg.timesteps)}


def sampling_of(model_dir: Path | str, c: RunConfig) -> SamplerSpec:
    """How a model samples in a run: a few-step student with its own sampler.json; an Euler model
    (the teacher, a Stage-II-only student) with its own sampler at the run's teacher_steps and cfg_scale."""
    own, _ = own_sampler(resolve_model_path(model_dir))
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


def _train_est(overrides: dict, default_steps: int, s_per_step: float) -> float:
    return float(overrides.get("steps", default_steps)) * s_per_step


def stages(c: RunConfig) -> list[Stage]:
    """The method's stages with cost estimates (seconds, this 2-core CPU, measured 2026-11-26)."""
    out = []
    if c.method != "dmd2":
        what = {"vdmini": "Stage I: metric-drop importance (VDMini)", "lightning": "Stage I: Taylor width saliency"}
        est = 16 * c.metric_cases * 0.6 if c.method == "vdmini" else 2.5 * c.calib * (2 if c.data_free else 1)
        out.append(Stage("1_analyze", what.get(c.method, "Stage I: ELBO block importance"), stage_analyze, est))
        out.append(Stage("2_plan", f"plan: remove {c.prune_ratio:.0%} of the parameters", stage_plan, 1.0))
        recipe = stage2_recipe(c)
        per_step = {"dpp": 1.0, "icmd": 1.2, "align": 1.0}[recipe] * float(c.stage2.get("batch_size", 16)) / 16
        out.append(Stage("3_stage2", f"Stage II: {recipe}", stage_stage2, _train_est(c.stage2, 300, per_step)))
    if c.method in ("fastlightgen", "lightning", "dmd2"):
        recipe = "fastlightgen" if c.method == "fastlightgen" else "dmd2"
        per_step = 0.3 * float(c.stage3.get("batch_size", 4)) / 4
        out.append(Stage("4_stage3", f"Stage III: {recipe} DMD", stage_stage3, _train_est(c.stage3, 300, per_step)))
    evals = c.eval_cases * (c.teacher_steps * 2 + 50) * 0.012
    out.append(Stage("evaluate", f"ShapesBench: teacher and student on {c.eval_cases} test cases", stage_evaluate, evals))
    out.append(Stage("bench", "end-to-end time per video, side by side", stage_bench, (c.bench_repeats + 1) * 2.5))
    out.append(Stage("report", "report (Markdown + HTML)", stage_report, 10.0))
    return out


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
    ev, be = state["stages"].get("evaluate", {}).get("summary"), state["stages"].get("bench", {}).get("summary")
    if not ev or not be:
        return "incomplete run"
    s = student_sampling(run)
    pruned = ""
    plan = state["stages"].get("2_plan", {}).get("summary") or {}
    if plan.get("removed_fraction") is not None:
        pruned = f", {plan['removed_fraction']:.0%} of the parameters removed"
    return (f"{run.cfg.method} student ({s.num_steps} {s.kind.replace('_', '-')} steps{pruned}): ShapesBench "
            f"{ev['student_score']:.3f}{_band(ev.get('student_interval'))} vs teacher {ev['teacher_score']:.3f}"
            f"{_band(ev.get('teacher_interval'))}, {evaluation_note(ev)}; {be['speedup']:.1f}x faster end to end "
            f"({be['student_s'] * 1000:.0f} ms vs {be['teacher_s']:.2f} s per video)")


def run_pipeline(cfg: RunConfig, only: list[str] | None = None, keep: frozenset = frozenset(),
                 keep_nested: dict | None = None) -> dict:
    """Run (or continue) every stage of cfg.method in cfg.out; returns run.json's content.
    `only`: run just these stages (the others must be complete or are skipped). The run folder is
    locked for the whole run (fastlight/train/lock.py): a second `fastlight run` on it is refused."""
    cfg = resolve(cfg, keep, keep_nested)
    run = Run(cfg)
    plan = stages(cfg)
    # every check before anything is written (the lock creates the folder): a refused run leaves no
    # config.yaml to block the corrected rerun
    check_stage_configs(run, [s.name for s in plan])
    check_only(run, plan, only)
    with RunLock(cfg.out, "run folder (out=)"):
        return _run_stages(run, plan, only)


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

        prev = yaml.safe_load(old.read_text())
        now = dataclasses.asdict(cfg)
        diff = sorted(k for k in set(prev) | set(now) if k != "out" and prev.get(k) != now.get(k))
        if diff:
            raise ConfigError(f"{run.root} holds a run with a different config ({', '.join(diff[:4])} differ); "
                              f"use a new out=... or delete the folder")
    save_config(cfg, run.root)
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
        scale = wall_done / est_done if est_done > 0 and wall_done > 0 else 1.0
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
