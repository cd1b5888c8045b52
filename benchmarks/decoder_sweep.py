"""Which light-decoder settings keep the student's ShapesBench? Decoder variants of a finished run, on VALIDATION cases.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/decoder_sweep.py runs/shapes_pipeline \
        --variant base --variant long:steps=2400 --variant wide:fast_width=24,steps=2400 \
        --cases 64 --out runs/decsweep [--threads 1] [--train-only]

Each `--variant NAME[:KEY=VALUE,...]` is the run's own `decoder:` settings (its config.yaml) with those keys
replaced (any key of `decoder:`, fastlight/decoder/stage.py; values parsed as YAML), built by the run's own stage
code (`build_light_decoder`: the run's latent shards, seed) into OUT/NAME (a finished variant is reused). Then the
run's student (its own few-step sampler) is sampled ONCE on the first `--cases` ShapesBench VALIDATION cases of the
teacher's world, and its latents are decoded by the pipeline's full VAE and by every variant's light decoder
(`fastlight.evaluate.real.evaluate_oracle_cases` with one decoder row per variant): one row per variant with its
score, its 95% interval, the paired differences variant - full decoder and (after the first variant) variant -
first variant, the PSNR vs the full decoder, and the decoder's time per video (median of `--time-repeats` decodes
of one validation latent, the variants and the full VAE interleaved in the same process: a ratio, not a benchmark
of the machine). This is where `decoder:` settings are CHOSEN; the chosen recipe's run reports TEST cases.
Results go to OUT/decoder_sweep.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastlight.data.latents import _Vae  # noqa: E402
from fastlight.decoder.stage import build_light_decoder, decoder_settings  # noqa: E402
from fastlight.errors import ConfigError, FastlightError, MissingFileError  # noqa: E402
from fastlight.evaluate.real import evaluate_oracle_cases, pipeline_oracle  # noqa: E402
from fastlight.evaluate.real_samples import decode_latents  # noqa: E402
from fastlight.evaluate.stats import Interval  # noqa: E402
from fastlight.fileio import atomic_write_json  # noqa: E402
from fastlight.run.pipeline import (VIDEO_KEYS, Run, RunConfig, decoder_pool, eval_options,  # noqa: E402
                                    sampling_of, student_sampling, teacher_folder, teacher_transformer)

FULL = "student"  # the student decoded by the pipeline's own VAE: every variant's paired reference
TEACHER = "teacher"  # the run's teacher (its own sampler, full decoder): the evaluation's reference row


def parse_variant(text: str) -> tuple[str, dict]:
    """'NAME' or 'NAME:k=v,k=v' -> (NAME, {k: YAML value})."""
    name, _, rest = text.partition(":")
    pairs = [o for o in rest.split(",") if o]
    if not name or "/" in name or name in (FULL, TEACHER) or any("=" not in o for o in pairs):
        raise ConfigError(f"--variant {text!r}: expected NAME or NAME:KEY=VALUE,KEY=VALUE (e.g. long:steps=2400), "
                          f"NAME not {FULL!r} or {TEACHER!r}")
    return name, {k: _value(v) for k, v in (o.split("=", 1) for o in pairs)}


def _value(text: str):
    """A YAML value, with 3e-3 a number (YAML 1.1 reads a float without a dot as a string)."""
    v = yaml.safe_load(text)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def load_run(folder: Path) -> Run:
    cfg = folder / "config.yaml"
    if not cfg.is_file():
        raise MissingFileError(f"{folder} has no config.yaml; pass a `fastlight run` folder "
                               "(e.g. runs/shapes_pipeline)")
    run = Run(RunConfig(**yaml.safe_load(cfg.read_text())))
    if not run.student.is_dir():
        raise MissingFileError(f"{folder}: no student model at {run.student}; finish the run's Stage III first")
    return run


def build_variant(run: Run, overrides: dict, out: Path, threads: int) -> Path:
    """The run's decoder settings with `overrides`, built into `out` by the stage's own code (resumes)."""
    settings = decoder_settings({**(run.cfg.decoder or {}), **overrides})
    c = run.cfg
    latents = decoder_pool(run, settings, out, progress=False)  # the shards, or the student's samples
    summary = build_light_decoder(teacher_folder(c) / "vae", latents, out, settings, c.seed, threads, progress=False)
    return Path(summary["decoder"])


@torch.no_grad()
def decode_times(vaes: dict[str, _Vae], z: torch.Tensor, repeats: int) -> dict[str, float]:
    """{name: median seconds to decode `z` (one normalised latent)}, the decoders interleaved round by round after
    a warm-up."""
    times: dict[str, list[float]] = {n: [] for n in vaes}
    for r in range(repeats + 1):
        for n, v in vaes.items():
            t0 = time.perf_counter()
            decode_latents(v, [z])  # the evaluate / pipeline path: de-normalise, decode, to uint8 frames
            if r:  # round 0 warms up
                times[n].append(time.perf_counter() - t0)
    return {n: statistics.median(t) for n, t in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished `fastlight run` folder of a pipeline teacher")
    ap.add_argument("--variant", action="append", required=True, help="NAME or NAME:KEY=VALUE,KEY=VALUE")
    ap.add_argument("--cases", type=int, default=64, help="validation cases (the same for every variant)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the decoder trainings (part of their "
                    "resumable config: a finished variant is reused only with the threads it was built with)")
    ap.add_argument("--eval-threads", type=int, default=None,
                    help="torch threads of the evaluation (default --threads)")
    ap.add_argument("--time-repeats", type=int, default=5)
    ap.add_argument("--train-only", action="store_true", help="build the variants, score nothing")
    ap.add_argument("--out", type=Path, default=Path("runs/decoder_sweep"))
    a = ap.parse_args(argv)
    variants = dict(parse_variant(v) for v in a.variant)
    torch.set_num_threads(a.threads)
    run = load_run(a.run)
    c = run.cfg
    folders, train_s = {}, {}
    for name, overrides in variants.items():
        t0 = time.time()
        folders[name] = build_variant(run, overrides, a.out / name, a.threads)
        train_s[name] = round(time.time() - t0)
        print(f"built {name} ({train_s[name]} s): {folders[name]}", flush=True)
    if a.train_only:
        return
    torch.set_num_threads(a.eval_threads or a.threads)
    pipeline = teacher_folder(c)
    size = {k: eval_options(c)[k] for k in VIDEO_KEYS}
    oracle = pipeline_oracle(pipeline, **size, seed=c.seed, split="validation")
    if oracle is None:
        raise ConfigError(f"teacher {c.teacher} has no world oracle: the sweep judges decoders with one")
    rows = {TEACHER: (teacher_transformer(c), sampling_of(c.teacher, c)), FULL: (run.student, student_sampling(run))}
    res = evaluate_oracle_cases(pipeline, rows, oracle, a.cases, a.out / "validation_eval", **size, seed=c.seed,
                                videos=False, progress=True, decoders={n: (FULL, f) for n, f in folders.items()})
    vaes = {n: _Vae(f, torch.device("cpu"), torch.float32) for n, f in {FULL: pipeline / "vae", **folders}.items()}
    vae = vaes[FULL]
    # one latent of the evaluated size: (1, z_dim, 1 + (F - 1) / r, H / s, W / s)
    sample = torch.randn(1, vae.vae.config.z_dim, 1 + (size["num_frames"] - 1) // vae.temporal,
                         size["height"] // vae.spatial, size["width"] // vae.spatial,
                         generator=torch.Generator().manual_seed(c.seed))
    times = decode_times(vaes, sample, a.time_repeats)
    orc = res["oracle"]
    teacher, full = orc["models"][TEACHER], orc["models"][FULL]
    result = {"run": str(a.run), "split": "validation", "cases": a.cases,
              "teacher": {"score": teacher["score"], "interval": teacher["interval"], "parts": teacher.get("parts")},
              "full_decoder": {"score": full["score"], "interval": full["interval"], "parts": full.get("parts"),
                               "minus_teacher": orc["pairs"][FULL]["score"], "decode_s": times[FULL]},
              "first_variant": next(iter(variants)), "variants": {}}
    print(f"{'teacher (full decoder)':24s} {Interval.from_json(teacher['interval']).fmt()}")
    print(f"{'student, full decoder':24s} {Interval.from_json(full['interval']).fmt()}  - teacher "
          f"{Interval.from_json(orc['pairs'][FULL]['score']).fmt('+.3f')}  decode {times[FULL]:.4f} s")
    first = result["first_variant"]
    for name, overrides in variants.items():
        m = orc["models"][name]
        minus_full = oracle.paired(m, full)["score"]  # the same cases and noise: paired
        row = {"overrides": overrides, "score": m["score"], "interval": m["interval"], "parts": m.get("parts"),
               "minus_full_decoder": minus_full, "minus_teacher": orc["pairs"][name]["score"],
               "psnr_vs_full_db": res["models"][name].get("decoder_psnr_db"), "decode_s": times[name],
               "train_s": train_s[name]}
        if name != first:  # "A beats B" between variants needs their paired interval, not two marginal ones
            row["minus_first_variant"] = oracle.paired(m, orc["models"][first])["score"]
        result["variants"][name] = row
        psnr = row["psnr_vs_full_db"]
        psnr_txt = Interval.from_json(psnr).fmt(".1f") if isinstance(psnr, dict) else str(psnr)
        vs_first = (f"  - {first} {Interval.from_json(row['minus_first_variant']).fmt('+.3f')}"
                    if name != first else "")
        print(f"{name:24s} {Interval.from_json(m['interval']).fmt()}  "
              f"- full {Interval.from_json(minus_full).fmt('+.3f')}  "
              f"- teacher {Interval.from_json(row['minus_teacher']).fmt('+.3f')}{vs_first}  PSNR {psnr_txt} dB  "
              f"decode {times[name]:.4f} s ({times[FULL] / times[name]:.1f}x faster)", flush=True)
    atomic_write_json(a.out / "decoder_sweep.json", result)
    print(f"wrote {a.out / 'decoder_sweep.json'}")


if __name__ == "__main__":
    try:
        main()
    except FastlightError as e:  # bad input (e.g. a variant folder built with other settings): one line
        print(f"decoder_sweep: error: {e}", file=sys.stderr)
        sys.exit(2)
