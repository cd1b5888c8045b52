"""The FastLightGen paper's table on a Shapes pipeline run: every row scored by the world's oracle with 95%
intervals, and the paper's seven findings as stated paired tests.

    fastlight run configs/wan/wan22_ti2v_5b.yaml teacher=SHAPES_PIPE data=SHARDS ...   # a fastlightgen pipeline run
    python benchmarks/paper_table.py --run RUN [--eval-cases N] [--threads T]

Rows (one evaluation, `fastlight.evaluate.real.evaluate_oracle_cases`: the same ShapesBench TEST cases, the same
noise, the same VAE for every row; the first row is the reference):

  teacher, 50 Euler steps            the run's teacher pipeline transformer, its CFG and scheduler shift
  teacher, 4 Euler steps             the same, 4 steps
  Stage II pruned, 28 Euler steps    the run's Stage II model with the run's depth plan applied, CFG
  step-only DMD2, 4 steps            DMD2 from the unpruned teacher (trained here)
  step-only DMD2, 3 steps            the same at timesteps 1000/667/333: about the joint student's cost (3 x 1.00
                                     of the unpruned model's work against 4 x 0.70 at the paper's 30%)
  FastLightGen, 4 steps, pruned      the run's Stage III student
  FastLightGen beta2 = 0 / 0.25 / 1  Stage III with guide_beta2 = b (the run's own student where b is its value)
  FastLightGen, Stage II alpha = a   Stage II (dpp) with alpha = a in {0, 0.5, 1}, then the run's Stage III (the
                                     run's own student where a is its alpha)
  FastLightGen, Stage II alpha = 1,  Stage II with alpha = 1 and `target: teacher` (v_unpruned from a frozen copy of
    frozen target                    the starting weights, not the trained shared weights), then the run's Stage III
  FastLightGen, unpruned scores      Stage III with score_init = unpruned (real and fake scores from the unpruned
                                     teacher, not the well-guided pruned pair)
  FastLightGen, prune_ratio r        a plan removing r in {0.5, 0.7} from the run's Stage I importance, then the
                                     run's Stage II and Stage III on it

Reused from the run: its teacher, Stage I importance, plan, Stage II model and Stage III student. Trained here,
each into RUN/paper_table/<row>/ with the run's own Stage III settings (steps, lr, batch, data, shift; only
the named setting differs), resumable (a re-run continues an interrupted training from its checkpoint and
skips a finished one): the step-only DMD2 students (recipe dmd2, teacher = the unpruned pipeline teacher) and
the beta2 variants (recipe fastlightgen on the Stage II model), and for the alpha, teacher and ratio findings
(`--skip` leaves any of them out: each trains models) the Stage II alpha variants, the unpruned-scores student
and the 50% / 70% plans' Stage II + Stage III. The evaluation writes RUN/paper_table/eval/
(eval.json: every row's oracle score, parts and per-case data); it is reused when its rows, samplers and cases
match. Writes RUN/paper_table/paper_table.json and paper_table.md (atomically).

**Verdicts** (`verdict3`): each finding's paired tests are `benchmarks/ablations.py`'s (`beats`: the paired 95%
interval of score(A) - score(B) over the same cases above the margin); a finding is *confirmed* when every
test holds, *refuted* when some test's interval lies wholly below its margin (B beats A), and *cannot tell*
otherwise (an interval that straddles the margin), or when this table does not measure it. "Above" and
"below" mean by more than NEGLIGIBLE (1e-6): two models that sample the same videos differ by float rounding.

  importance  Stage I's block importance is U-shaped (`ablations.importance_verdict`; refuted when the first
              or the last block lies below twice the middle mean by more than 1.96 standard errors)
  alpha       alpha = 1 beats alpha = 0.5 and alpha = 0 (each after the same Stage III: the paper scores the final
              4-step model), with the paper's shared target; the same tests with the frozen target are reported
              beside it (`frozen_target`: its own verdict, not the finding's)
  beta2       beta2 = 0.25 beats beta2 = 0 and beta2 = 1
  teacher     FastLightGen (pruned, well-guided scores) beats the unpruned-scores student
  joint       FastLightGen (4 steps, pruned) beats step-only DMD2 at 3 steps (about the same cost: the paper's
              "at equal cost"); the test at 4 steps each (the joint student the cheaper) is reported beside it
              (`four_steps`: its own verdict, not the finding's)
  stage3      FastLightGen (4 steps) beats the 28-step Stage II model
  ratio       "falls sharply": score(the run's ~30% plan) - score(the 50% plan) above SHARP_DROP (0.05); the
              70% plan is reported beside it

Cost, measured 2026-12-06 on the 2-core machine alone (`--eval-cases 320 --threads 2` on a `make demo` run, the
run's eval.batch_size 8): 41 min in all, 19 min training the 15 models (five Stage II at ~2.9 min, ten Stage III at
~30 s) and 23 min evaluating the 14 sampled rows on 320 cases (sampling 3.3 min, decoding + the proxies 12.9 min,
the oracle ~6 min); `--skip alpha,ratio` leaves out five Stage II trainings and five rows.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import yaml

from fastlight.diffusion.spec import SamplerSpec
from fastlight.errors import ConfigError, FastlightError, InputError, MissingFileError
from fastlight.evaluate.real import EVAL_FILE, evaluate_oracle_cases, pipeline_oracle
from fastlight.evaluate.stats import Interval
from fastlight.fileio import atomic_write_json, atomic_write_text
from fastlight.run.pipeline import (VIDEO_KEYS, Run, RunConfig, _recipe_config, _train, eval_options, sampling_of,
                                    stage2_config, stage2_recipe, stage3_config, student_sampling, teacher_folder,
                                    teacher_shift, teacher_transformer)

HERE = Path(__file__).resolve().parent
TEACHER_STEPS = 50  # the paper's teacher
FEW_STEPS = 4
STAGE2_STEPS = 28
EQUAL_COST_TIMESTEPS = [1000, 667, 333]  # 3 unpruned steps ~ 4 steps of a 30%-pruned model (3.0 vs 2.8 of the work)
BETA2S = (0.0, 0.25, 1.0)
ALPHAS = (0.0, 0.5, 1.0)
RATIOS = (0.5, 0.7)  # the run's own plan (~30%) is the third
COSTLY = ("alpha", "teacher", "ratio")  # the findings that train models beyond the paper's rows (--skip)
FOLDER = "paper_table"
CONFIRMED, REFUTED, CANNOT_TELL = "confirmed", "refuted", "cannot tell"
# score differences this small are float rounding (two models that sample the same videos), not evidence: an
# interval must clear its margin by more than this to confirm or refute
NEGLIGIBLE = 1e-6

ROW_TEACHER4 = f"teacher, {FEW_STEPS} Euler steps"
ROW_STAGE2 = f"Stage II pruned, {STAGE2_STEPS} Euler steps"
ROW_DMD2 = f"step-only DMD2, {FEW_STEPS} steps, unpruned"
ROW_DMD2_EQUAL = f"step-only DMD2, {len(EQUAL_COST_TIMESTEPS)} steps, unpruned (about the joint student's cost)"
ROW_FLG = f"FastLightGen, {FEW_STEPS} steps, pruned (the run's student)"
ROW_UNPRUNED = "FastLightGen, unpruned scores"
ROW_ALPHA_FROZEN = "FastLightGen, Stage II alpha = 1, frozen target"


def teacher_row(steps: int) -> str:
    return f"teacher, {steps} Euler steps"


def beta2_row(b: float) -> str:
    return f"FastLightGen beta2 = {b:g}"


def alpha_row(a: float) -> str:
    return f"FastLightGen, Stage II alpha = {a:g}"


def ratio_row(r: float) -> str:
    return f"FastLightGen, prune_ratio {r:g}"


def _ablations():
    """benchmarks/ablations.py as a module (its verdict functions: `beats`, `importance_verdict`, PAPER)."""
    spec = importlib.util.spec_from_file_location("fastlight_benchmarks_ablations", HERE / "ablations.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ablations = _ablations()
SHARP_DROP = ablations.SHARP_DROP  # the ratio finding's margin, the one benchmarks/ablations.py tests


# ---- verdicts ------------------------------------------------------------------------------------------
def verdict3(tests: list[dict]) -> str:
    """confirmed (every test's interval lies above its margin), refuted (some test's interval lies wholly
    below its margin), else cannot tell; by more than NEGLIGIBLE. A test: {difference: {estimate, low, high},
    margin, holds} (`ablations.beats`)."""
    if not tests:
        return CANNOT_TELL
    if all(t["difference"]["low"] > t["margin"] + NEGLIGIBLE for t in tests):
        return CONFIRMED
    if any(t["difference"]["high"] < t["margin"] - NEGLIGIBLE for t in tests):
        return REFUTED
    return CANNOT_TELL


def tolerant(test: dict) -> dict:
    """`ablations.beats`'s test with `holds` read as verdict3 reads it (above the margin by > NEGLIGIBLE)."""
    return {**test, "holds": test["difference"]["low"] > test["margin"] + NEGLIGIBLE}


def importance_verdict3(blocks: list[dict]) -> dict:
    """Stage I's importance: `ablations.importance_verdict` (confirmed when it reproduces), refuted when the
    first or the last block lies below twice the middle third's mean by more than 1.96 standard errors."""
    v = ablations.importance_verdict(blocks)
    se = {b["index"]: b.get("stderr") or 0.0 for b in blocks}
    last = len(blocks) - 1
    below = [i for i, s in ((0, v["first"]), (last, v["last"])) if s + 1.96 * se[i] < 2 * v["middle_mean"]]
    word = CONFIRMED if v["reproduces"] else REFUTED if below else CANNOT_TELL
    return {**v, "verdict": word, "below": below}


def finding(tests: list[dict]) -> dict:
    tests = [tolerant(t) for t in tests]
    return {"tests": tests, "verdict": verdict3(tests)}


def not_measured(why: str) -> dict:
    return {"tests": [], "verdict": CANNOT_TELL, "why": why}


def _left_out(key: str) -> dict:
    return not_measured(f"left out of this table (--skip {key}); run it without --skip to measure it")


def findings(scores: dict[str, dict], importance: list[dict] | None, run_beta2: float,
             run_alpha: float | None = None, ratios: tuple[float, ...] = RATIOS) -> dict:
    """The seven findings from the rows' oracle results (`scores`: row -> result with per_case) and Stage I; a
    costly finding whose rows are not in `scores` (--skip) is `cannot tell`, saying so. The ratio finding
    compares the run's plan with the first of `ratios` (the paper's 50%)."""
    beats = ablations.beats
    out = {"importance": importance_verdict3(importance) if importance else
           not_measured("the run has no Stage I importance (1_analyze/importance.json)")}
    a = {x: scores.get(alpha_row(x)) for x in ALPHAS}
    out["alpha"] = (finding([beats(a[1.0], a[0.5], label="alpha 1 - 0.5"), beats(a[1.0], a[0.0], label="alpha 1 - 0")])
                    if all(a.values()) else _left_out("alpha"))
    frozen = scores.get(ROW_ALPHA_FROZEN)
    if frozen and all(a.values()):  # alpha = 1 without the shared target's trivial solution (its own verdict)
        out["alpha"]["frozen_target"] = finding([beats(frozen, a[0.5], label="alpha 1 (frozen target) - 0.5"),
                                                 beats(frozen, a[0.0], label="alpha 1 (frozen target) - 0")])
    b = {x: scores[beta2_row(x)] for x in BETA2S}
    out["beta2"] = finding([beats(b[0.25], b[0.0], label="beta2 0.25 - 0"),
                            beats(b[0.25], b[1.0], label="beta2 0.25 - 1")])
    out["teacher"] = (finding([beats(scores[ROW_FLG], scores[ROW_UNPRUNED], label="pruned scores - unpruned scores")])
                      if ROW_UNPRUNED in scores else _left_out("teacher"))
    out["joint"] = finding([beats(scores[ROW_FLG], scores[ROW_DMD2_EQUAL],
                                  label=f"FastLightGen - step-only DMD2 at {len(EQUAL_COST_TIMESTEPS)} steps")])
    out["joint"]["four_steps"] = finding([beats(scores[ROW_FLG], scores[ROW_DMD2],
                                                label=f"FastLightGen - step-only DMD2 ({FEW_STEPS} steps each)")])
    out["stage3"] = finding([beats(scores[ROW_FLG], scores[ROW_STAGE2], label=f"FastLightGen - Stage II {STAGE2_STEPS} steps")])
    half = scores.get(ratio_row(ratios[0]))
    label = f"the run's plan - the {ratios[0]:g} plan"
    out["ratio"] = finding([beats(scores[ROW_FLG], half, SHARP_DROP, label=label)]) if half else _left_out("ratio")
    out["beta2"]["run_beta2"] = run_beta2
    if run_alpha is not None:
        out["alpha"]["run_alpha"] = run_alpha
    return out


# ---- the rows ------------------------------------------------------------------------------------------
class Table:
    def __init__(self, run_dir: Path, eval_cases: int | None = None, threads: int | None = None,
                 teacher_steps: int = TEACHER_STEPS, skip: tuple[str, ...] = (), ratios: tuple[float, ...] = RATIOS):
        cfg_file = run_dir / "config.yaml"
        if not cfg_file.is_file():
            raise MissingFileError(f"{run_dir} has no config.yaml: pass a `fastlight run` folder (--run RUN)")
        self.run = Run(RunConfig(**yaml.safe_load(cfg_file.read_text())))
        self.run.root = run_dir
        self.c = self.run.cfg
        if threads:
            self.c.threads = threads
        if self.c.method != "fastlightgen" or not self.run.pipeline:
            raise ConfigError(f"{run_dir} is a {self.c.method} run on {self.c.teacher}; the paper's table needs a "
                              "fastlightgen run on a pipeline teacher (a Shapes pipeline folder)")
        for stage in ("2_plan", "3_stage2", "4_stage3"):
            if not (run_dir / stage / ".done.json").is_file():
                raise MissingFileError(f"{run_dir}: stage {stage} is not finished; run `fastlight run` through "
                                       "4_stage3 first")
        self.root = run_dir / FOLDER
        self.eval_cases = eval_cases or self.c.eval_cases
        self.teacher_steps = teacher_steps
        self.measure = [k for k in COSTLY if k not in skip]
        self.ratios = ratios
        opts = eval_options(self.c)
        self.size = {k: opts[k] for k in VIDEO_KEYS}
        self.batch_size = opts["batch_size"]  # the run's eval.batch_size (results do not depend on it)
        self.oracle = pipeline_oracle(teacher_folder(self.c), **self.size, seed=self.c.seed)
        if self.oracle is None:
            raise InputError(f"teacher {self.c.teacher} has no world oracle (not a Shapes pipeline folder): the "
                             "paper's table scores rows with one")

    def run_beta2(self) -> float:
        stage3 = _recipe_config("fastlightgen", {"out": "x", "teacher": "x"}, self.c.stage3)
        return float(stage3.guide_beta2)

    def run_stage2_setting(self) -> tuple[float, str]:
        """The run's Stage II (alpha, target)."""
        stage2 = _recipe_config(stage2_recipe(self.c), {"out": "x", "teacher": "x", "plan": "x"}, self.c.stage2)
        return float(stage2.alpha), str(getattr(stage2, "target", "shared"))

    def run_alpha(self) -> float:
        return self.run_stage2_setting()[0]

    def train(self, name: str, recipe: str, teacher: str, **over) -> Path:
        """A Stage III variant with the run's Stage III settings and `over`, into RUN/paper_table/<name>/."""
        return _train(*stage3_config(self.run, self.root / name, teacher, recipe, **over))

    def train_stage2(self, name: str, plan: Path, **over) -> Path:
        """A Stage II variant (the run's recipe and settings and `over`) on `plan`, into RUN/paper_table/<name>/."""
        return _train(*stage2_config(self.run, self.root / name, plan, **over))

    def ratio_plan(self, ratio: float) -> Path:
        """A depth plan removing `ratio` of the parameters from the run's Stage I importance (made once)."""
        from fastlight.analyze.plans import make_plan

        out = self.root / f"ratio_{ratio:g}" / "plan.json"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            make_plan(str(self.run.dir("1_analyze") / "importance.json"), self.c.teacher, ratio, str(out), "depth")
        return out

    def stage2_pruned(self):
        """The Stage II model with the run's depth plan applied (a Denoiser: the same null as its folder)."""
        from fastlight.models.load import load_denoiser
        from fastlight.prune.surgery import prune_depth

        drop = json.loads(self.run.plan.read_text())["drop_blocks"]
        return prune_depth(load_denoiser(self.run.stage2_model).eval(), drop)

    def models(self) -> dict[str, tuple]:
        """row -> (model folder or Denoiser, SamplerSpec), the reference first; trains what is missing."""
        c, shift = self.c, teacher_shift(self.c)
        teacher = teacher_transformer(c)
        few = student_sampling(self.run)
        rows = {teacher_row(self.teacher_steps): (teacher, SamplerSpec.euler(self.teacher_steps, c.cfg_scale, shift)),
                ROW_TEACHER4: (teacher, SamplerSpec.euler(FEW_STEPS, c.cfg_scale, shift)),
                ROW_STAGE2: (self.stage2_pruned(), SamplerSpec.euler(STAGE2_STEPS, c.cfg_scale, shift))}
        dmd2 = self.train("dmd2_4steps", "dmd2", c.teacher)
        rows[ROW_DMD2] = (dmd2, sampling_of(dmd2, c))
        dmd2_equal = self.train(f"dmd2_{len(EQUAL_COST_TIMESTEPS)}steps", "dmd2", c.teacher,
                                timesteps=EQUAL_COST_TIMESTEPS)
        rows[ROW_DMD2_EQUAL] = (dmd2_equal, sampling_of(dmd2_equal, c))
        rows[ROW_FLG] = (self.run.stage3_model, few)
        aliases = self.aliases()  # the run's own beta2 / alpha is the run's student: not trained or sampled twice
        for b in BETA2S:
            if beta2_row(b) not in aliases:
                model = self.train(f"beta2_{b:g}", "fastlightgen", str(self.run.stage2_model), guide_beta2=b)
                rows[beta2_row(b)] = (model, sampling_of(model, c))
        if "alpha" in self.measure:
            for a in ALPHAS:
                if alpha_row(a) not in aliases:
                    stage2 = self.train_stage2(f"alpha_{a:g}/stage2", self.run.plan, alpha=a, target="shared")
                    model = self.train(f"alpha_{a:g}/stage3", "fastlightgen", str(stage2))
                    rows[alpha_row(a)] = (model, sampling_of(model, c))
            if ROW_ALPHA_FROZEN not in aliases:
                stage2 = self.train_stage2("alpha_1_frozen/stage2", self.run.plan, alpha=1.0, target="teacher")
                model = self.train("alpha_1_frozen/stage3", "fastlightgen", str(stage2))
                rows[ROW_ALPHA_FROZEN] = (model, sampling_of(model, c))
        if "teacher" in self.measure:
            model = self.train("unpruned_scores", "fastlightgen", str(self.run.stage2_model), score_init="unpruned")
            rows[ROW_UNPRUNED] = (model, sampling_of(model, c))
        if "ratio" in self.measure:
            for r in self.ratios:
                stage2 = self.train_stage2(f"ratio_{r:g}/stage2", self.ratio_plan(r))
                model = self.train(f"ratio_{r:g}/stage3", "fastlightgen", str(stage2))
                rows[ratio_row(r)] = (model, sampling_of(model, c))
        return rows

    def aliases(self) -> dict[str, str]:
        """Rows that are another row's model: the beta2 row of the run's own beta2 and (when measured) the alpha
        row of its own alpha are the run's student."""
        own_beta2 = self.run_beta2()
        out = {beta2_row(b): ROW_FLG for b in BETA2S if b == own_beta2}
        if "alpha" in self.measure:
            own_alpha, own_target = self.run_stage2_setting()
            out.update({alpha_row(a): ROW_FLG for a in ALPHAS if a == own_alpha and own_target == "shared"})
            if own_alpha == 1.0 and own_target == "teacher":
                out[ROW_ALPHA_FROZEN] = ROW_FLG
        return out

    def removed_fractions(self) -> dict[str, float]:
        """row -> the fraction of the parameters its plan removes (the run's student and the ratio rows)."""
        out = {ROW_FLG: json.loads(self.run.plan.read_text())["achieved_ratio"]}
        if "ratio" in self.measure:
            out.update({ratio_row(r): json.loads(self.ratio_plan(r).read_text())["achieved_ratio"]
                        for r in self.ratios})
        return out

    def evaluate(self, rows: dict[str, tuple]) -> dict:
        """eval.json of all rows on the same cases (reused when rows, samplers and cases match)."""
        out = self.root / "eval"
        done = out / EVAL_FILE
        if done.is_file():
            old = json.loads(done.read_text())
            want = json.loads(json.dumps({n: s.to_json() for n, (_, s) in rows.items()}))
            same = (old.get("num_prompts") == self.eval_cases and "oracle" in old
                    and {n: m["sampler"] for n, m in old["models"].items()} == want)
            if same:
                print(f"reusing {done} (the same rows, samplers and {self.eval_cases} cases)")
                return old
        return evaluate_oracle_cases(teacher_folder(self.c), rows, self.oracle, self.eval_cases, out, **self.size,
                                     seed=self.c.seed, videos=False, progress=True,
                                     batch_size=self.batch_size)


# ---- the table -------------------------------------------------------------------------------------------
def _iv(d: dict | None, spec: str = ".3f") -> str:
    if not d:
        return "n/a"
    return Interval.from_json(d).fmt(spec)


def row_summary(res: dict, spec: dict, reference: str, name: str) -> dict:
    """One row of the table: sampler, oracle score + interval, its parts, and row - reference (paired)."""
    orc = res["oracle"]
    m = orc["models"][name]
    return {"sampler": spec, "nfe": None if spec is None else SamplerSpec.from_json(spec).nfe,
            "score": m["score"], "interval": m.get("interval"),
            "parts": {k: v for k, v in m["parts"].items()},
            "minus_reference": None if name == reference else orc["pairs"][name]["score"]}


def build(res: dict, importance: list[dict] | None, run_beta2: float, aliases: dict[str, str],
          run_alpha: float | None = None, removed: dict[str, float] | None = None,
          ratios: tuple[float, ...] = RATIOS) -> dict:
    """paper_table.json: the oracle, every row (an alias row: its model's numbers and `same_as`; a pruned row
    its plan's `removed_fraction`), findings. Rows: the paper's, then the beta2, alpha, teacher and ratio groups."""
    orc = res["oracle"]
    reference = res["reference"]
    rows = {n: row_summary(res, res["models"][n]["sampler"], reference, n) for n in orc["models"]}
    rows.update({a: {**rows[m], "same_as": m} for a, m in aliases.items()})
    for name, fraction in (removed or {}).items():
        if name in rows:
            rows[name]["removed_fraction"] = fraction
    groups = [[beta2_row(b) for b in BETA2S], [*(alpha_row(a) for a in ALPHAS), ROW_ALPHA_FROZEN], [ROW_UNPRUNED],
              [ratio_row(r) for r in ratios]]
    grouped = [n for g in groups for n in g if n in rows]
    rows = {n: rows[n] for n in [*(n for n in rows if n not in grouped), *grouped]}
    scores = {**orc["models"], **{a: orc["models"][m] for a, m in aliases.items()}}
    return {"oracle": {k: orc[k] for k in ("name", "oracle", "world", "split", "case_seed", "num_cases", "ideal")},
            "reference": reference, "seed": res["seed"], "rows": rows,
            "findings": findings(scores, importance, run_beta2, run_alpha, ratios)}


def _signed(x: float) -> str:
    """+0.0123; a difference too small for 4 decimals in scientific notation (-1.2e-05), not as -0.0000."""
    return f"{x:+.4f}" if x == 0 or abs(x) >= 5e-5 else f"{x:+.1e}"


def _diff(d: dict) -> str:
    return f"{_signed(d['estimate'])} [{_signed(d['low'])}, {_signed(d['high'])}]"


def _test_cell(t: dict) -> str:
    return f"{t['test']} = {_diff(t['difference'])} > {t['margin']:g}: {'holds' if t['holds'] else 'fails'}"


# side tests a finding reports beside its own (their own verdicts): key -> how the table names them
BESIDE = {"frozen_target": "with the frozen target", "four_steps": f"at {FEW_STEPS} steps each"}


def markdown(doc: dict) -> str:
    o = doc["oracle"]
    lines = [f"# The paper's table on the Shapes pipeline ({o['name']}, {o['num_cases']} {o['split']} cases, "
             f"oracle {o['oracle']}, 95% intervals)", "",
             "| row | sampler | score [95%] | direction | speed | smooth | static | row - teacher (paired) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in doc["rows"].items():
        s = SamplerSpec.from_json(r["sampler"])
        parts = r["parts"]
        cells = [f"{parts[k]:.3f}" if parts.get(k) is not None else "-" for k in ("direction", "speed", "smooth", "static")]
        diff = "0 (reference)" if r["minus_reference"] is None else _diff(r["minus_reference"])
        label = f"{name} (= {r['same_as']})" if r.get("same_as") else name
        if r.get("removed_fraction") is not None:
            label += f", {r['removed_fraction']:.1%} removed"
        lines.append(f"| {label} | {s.describe()} | {_iv(r['interval'], '.4f')} | {' | '.join(cells)} | {diff} |")
    ideal = o.get("ideal") or {}
    if ideal.get("score") is not None:
        lines.append(f"| the world's own clips (upper bound) | - | {ideal['score']:.4f} | | | | | |")
    lines += ["", "| finding | paper | verdict | paired tests (95% intervals over the same cases) |", "|---|---|---|---|"]
    for key, claim in ablations.PAPER.items():
        f = doc["findings"][key]
        if key == "importance" and "first" in f:
            detail = (f"first {f['first']:.4f}, last {f['last']:.4f}, middle mean {f['middle_mean']:.4f} "
                      f"({f['rule']})")
        elif f["tests"]:
            detail = "; ".join(_test_cell(t) for t in f["tests"])
            for side, words in BESIDE.items():
                if f.get(side):
                    detail += f"; {words} ({f[side]['verdict']}): " + "; ".join(_test_cell(t) for t in f[side]["tests"])
        else:
            detail = f"not measured: {f['why']}"
        lines.append(f"| {key} | {claim} | {f['verdict']} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a fastlightgen `fastlight run` folder on a Shapes pipeline teacher")
    ap.add_argument("--eval-cases", type=int, default=None, help="oracle TEST cases (default: the run's eval_cases)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the run's)")
    ap.add_argument("--skip", default="", help=f"comma list of findings to leave out, of: {', '.join(COSTLY)} (each "
                    "trains models beyond the paper's rows; a left-out finding reads `cannot tell`)")
    ap.add_argument("--ratios", default=",".join(f"{r:g}" for r in RATIOS),
                    help="the prune ratios whose plans the ratio finding trains beside the run's (the first is "
                    "the one it tests: the paper's 50%%)")
    ap.add_argument("--teacher-steps", type=int, default=TEACHER_STEPS, help=argparse.SUPPRESS)  # tests: fewer
    a = ap.parse_args(argv)
    try:
        ratios = tuple(float(r) for r in a.ratios.split(","))
    except ValueError:
        raise InputError(f"--ratios {a.ratios}: expected comma-separated fractions such as 0.5,0.7") from None
    skip = tuple(k for k in a.skip.split(",") if k)
    unknown = [k for k in skip if k not in COSTLY]
    if unknown:
        raise InputError(f"--skip {','.join(unknown)}: unknown finding; the ones that can be left out are "
                         f"{', '.join(COSTLY)}")
    t0 = time.time()
    table = Table(Path(a.run), a.eval_cases, a.threads, a.teacher_steps, skip, ratios)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    rows = table.models()
    res = table.evaluate(rows)
    imp_file = table.run.dir("1_analyze") / "importance.json"
    importance = json.loads(imp_file.read_text())["blocks"] if imp_file.is_file() else None
    doc = build(res, importance, table.run_beta2(), table.aliases(),
                table.run_alpha() if "alpha" in table.measure else None, table.removed_fractions(), ratios)
    doc["wall_s"] = round(time.time() - t0, 1)
    atomic_write_json(table.root / "paper_table.json", doc)
    md = markdown(doc)
    atomic_write_text(table.root / "paper_table.md", md)
    print(md)
    print(f"written to {table.root / 'paper_table.json'} and paper_table.md ({doc['wall_s']:.0f} s)")
    return doc


if __name__ == "__main__":
    try:
        main()
    except FastlightError as e:  # bad input: one line, as the CLI says it
        print(f"paper_table: error: {e}", file=sys.stderr)
        sys.exit(2)
