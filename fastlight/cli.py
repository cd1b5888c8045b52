"""`fastlight <verb>`: argument parsing and a dispatch table; the work lives in the modules."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from fastlight.errors import FastlightError, InputError


def _pretrain(a):
    from fastlight.train.command import train_command

    out = train_command("pretrain", a.config, a.overrides)
    print(f"model written to {out}")


def _sampler_args(s) -> None:
    """The explicit override of a model's own sampler (sampler.json); nothing given = the model's own."""
    s.add_argument("--sampler", default=None, choices=["euler", "few_step"],
                   help="override the model's own sampler (needed to override a few-step student's)")
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    s.add_argument("--guidance", "--cfg", dest="guidance", type=float, default=None,
                   help="w in v_uncond + w (v_cond - v_uncond); 1 = no guidance (default: the model's own)")
    s.add_argument("--shift", type=float, default=None, help="Euler grid shift (default: the model's own)")
    s.add_argument("--timesteps", default=None, help="few-step timesteps, e.g. 1000,750,500,250 (implies few_step)")


def _sampler_overrides(a) -> dict:
    timesteps = None
    if a.timesteps is not None:
        try:
            timesteps = tuple(float(t) for t in a.timesteps.split(",") if t.strip())
        except ValueError:
            raise InputError(f"--timesteps {a.timesteps!r}: give comma-separated numbers, e.g. 1000,750,500,250") from None
    return {"sampler": a.sampler, "num_steps": a.steps, "guidance": a.guidance, "shift": a.shift, "timesteps": timesteps}


def _sample(a):
    from fastlight.sample import sample_command

    for p in sample_command(a.model, a.prompt, a.out, a.image, a.seed, _sampler_overrides(a), backend=a.backend):
        print(p)


def _info(a):
    from fastlight.info import model_info, print_info

    print_info(model_info(a.path))


def _info_parser(sub) -> None:
    s = sub.add_parser("info", help="blocks, parameters and config of a model")
    s.add_argument("path", help="model folder or preset name (e.g. shapes-teacher)")
    s.set_defaults(fn=_info)


def _demo(a):
    from fastlight.shapes.generate import demo_command

    out = demo_command(a.out, a.model, a.seed, _sampler_overrides(a))
    print(f"demo videos in {out}/ (open {out}/grid.gif: top = the model's samples, bottom = ideal clips)")


def _evaluate_teacher(a):
    from fastlight.shapes.teacher_eval import evaluate_teacher

    evaluate_teacher(a.model, a.num_cases, a.seed, a.out, record=a.record, overrides=_sampler_overrides(a))


def _analyze(a):
    from fastlight.analyze.importance import analyze_command

    import yaml

    data = None if a.data is None else yaml.safe_load(a.data)
    analyze_command(a.model, a.calib, a.out, tuple(m.strip() for m in a.methods.split(",")), a.iterative, a.seed,
                    latents=a.latents, batch_size=a.batch_size, shift=a.shift, device=a.device,
                    metric_cases=a.metric_cases, metric_steps=a.metric_steps, metric_guidance=a.metric_guidance,
                    data=data, metric=a.metric)


def _plan(a):
    from fastlight.analyze.plans import plan_command

    plan_command(a.importance, a.model, a.ratio, a.out, a.kind, keep_ends=not a.no_keep_ends, reference=a.reference,
                 score=a.score, prune_heads=a.prune_heads)


def _block_ids(text: str) -> tuple[int, ...]:
    """`--skip 4,5` -> (4, 5)."""
    try:
        return tuple(int(i) for i in text.split(",") if i.strip()) if text else ()
    except ValueError:
        raise InputError(f"--skip {text!r}: give comma-separated block ids, e.g. 4,5") from None


def _evaluate(a):
    from fastlight.shapes.bench import evaluate_command

    skip = _block_ids(a.skip)
    res = evaluate_command(a.model, a.out, overrides=_sampler_overrides(a), num_cases=a.num_cases, seed=a.seed,
                           save_videos=not a.no_videos, skip=skip, vbench=not a.no_vbench)
    print(f"ShapesBench score {res['score']:.3f} (ideal clips {res['ideal']['score']:.3f}); details in {a.out}/shapesbench.json")


# the synthetic-video checks of the VBench-style dimensions live with the tests (a source checkout)
VBENCH_CHECKS = Path(__file__).resolve().parents[1] / "tests" / "evaluate" / "test_vbench_known_answers.py"


def _vbench(a):
    from fastlight.evaluate.vbench import DIMENSIONS, VBenchUnavailable, evaluate_folder

    if a.validate:
        if not VBENCH_CHECKS.is_file():
            raise InputError(f"--validate runs the known-answer checks of a source checkout ({VBENCH_CHECKS} is "
                             "missing); clone the repository and run it there")
        rc = subprocess.run([sys.executable, str(VBENCH_CHECKS)]).returncode
        if rc:
            raise SystemExit(rc)
        return
    if not a.folder:
        raise InputError("give a folder of videos (or --validate)")
    try:
        res = evaluate_folder(a.folder, images=a.images, fps=a.fps, dims=a.dims, backend=a.backend, out_json=a.out,
                              static_filter=not a.no_static_filter)
    except VBenchUnavailable as e:  # a missing optional package is bad input here, not a bug
        raise InputError(str(e)) from None
    if "status" in res:
        print(f"backend {res['backend']}: {res['status']}")
    for d in DIMENSIONS:
        if d in res:
            s = res[d]["score"]
            scored = res[d].get("num_scored")
            on = f" (on the {scored} of {res[d]['num_videos']} video(s) the static filter kept)" \
                if scored is not None and res[d].get("static_filter") else ""
            print(f"{d:24s} {res[d]['kind']:6s} {'n/a' if s is None else f'{s:.4f}'}{on}")
    for d in DIMENSIONS:
        if res.get(d, {}).get("missing"):
            print(f"{d}: {res['backend']} returned no per-video result for {', '.join(res[d]['missing'])}")
    print(f"scored {len(res['videos'])} video(s) of {len(res['videos']) + res['num_skipped']}")
    if res["num_skipped"]:
        print(f"skipped {res['num_skipped']}: {', '.join(res['skipped'])}")
        for name, why in res["unreadable"].items():
            print(f"  {name}: {why}")
    if res["fps_assumed"]:
        print(f"fps assumed {res['assumed_fps']:g} (the file gives none; only dynamic_degree uses it; set it with "
              f"--fps) for {len(res['fps_assumed'])}: {', '.join(res['fps_assumed'])}")


def _vbench_parser(sub) -> None:
    s = sub.add_parser("vbench", help="VBench-style dimensions (weight-free, exact/proxy labelled) on a folder of videos")
    s.add_argument("folder", nargs="?", help="folder of *.mp4 / *.gif videos")
    s.add_argument("--images", default=None,
                   help="folder of conditioning images (I2V dims), one per video with its name (a.png for a.mp4)")
    s.add_argument("--fps", type=float, default=None,
                   help="every video's fps (default: the file's; where it gives none, 8 is used and the video named)")
    s.add_argument("--dims", default=None,
                   help="comma-separated subset of the dimensions (default: all; the i2v_* ones need --images)")
    s.add_argument("--backend", default="builtin", choices=["builtin", "vbench"],
                   help="builtin (weight-free) or vbench (the official package and its weights; not run here)")
    s.add_argument("--no-static-filter", action="store_true",
                   help="score temporal_flickering on every video (exact formula) instead of the static ones "
                        "picked by the OpenCV-flow static filter (proxy)")
    s.add_argument("--out", default=None, help="write the results JSON here")
    s.add_argument("--validate", action="store_true", help="print the synthetic-video validation table")
    s.set_defaults(fn=_vbench)


def _fvd(a):
    from fastlight.evaluate.fvd import fvd_folders

    res = fvd_folders(a.real, a.generated, a.detector, batch_size=a.batch_size, device=a.device, out_json=a.out)
    print(f"FVD_{res['num_frames']} {res['fvd']:.4f} ({res['num_real']} real vs {res['num_generated']} generated "
          f"video(s); detector {res['detector']}, sha256 {res['detector_sha256'][:12]})")
    print(f"detector status: {res['status']}")
    for side in ("real", "generated"):
        for name, why in res["unreadable"][side].items():
            print(f"skipped {side} {name}: {why}")


def _fvd_parser(sub) -> None:
    s = sub.add_parser("fvd", help="Frechet video distance of two folders of videos with a detector you supply")
    s.add_argument("real", help="folder of reference *.mp4 / *.gif videos")
    s.add_argument("generated", help="folder of generated *.mp4 / *.gif videos")
    s.add_argument("--detector", required=True,
                   help="TorchScript feature network, e.g. StyleGAN-V's i3d_torchscript.pt; trusted input: it is "
                        "code that runs here, load only a file you chose")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", default=None, help="write the result JSON here")
    s.set_defaults(fn=_fvd)


def _report(a):
    from fastlight.report.report import report_command

    md, html = report_command(a.run_dir, a.out, a.title, a.baseline)
    print(f"report: {md} and {html}")


def _report_parser(sub) -> None:
    s = sub.add_parser("report", help="Markdown + self-contained HTML report of a run folder")
    s.add_argument("run_dir", help="folder searched recursively for shapesbench.json, bench JSON and importance files")
    s.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    s.add_argument("--title", default=None, help="report title (default: 'fastlight report: <run folder name>')")
    s.add_argument("--baseline", default=None,
                   help="method (folder path relative to RUN_DIR) to compare against (default: the most NFE x params)")
    s.set_defaults(fn=_report)


def _preprocess(a):
    from fastlight.data.latents import preprocess_command

    rc = preprocess_command(a.videos_dir, a.captions, a.vae, a.out, a.num_frames, a.height, a.width, a.text_embeds,
                            a.text_encoder, a.shard_size)
    if rc:
        raise SystemExit(rc)


def _config_and_overrides(a) -> tuple[str | None, list[str]]:
    """`verb [config.yaml] [key=value ...]`: a first positional that is key=value is an override."""
    if a.config is not None and "=" in a.config and not a.config.endswith((".yaml", ".yml")):
        return None, [a.config, *a.overrides]
    return a.config, list(a.overrides)


def _train(a):
    from fastlight.train.command import train_command

    out = train_command(a.recipe, *_config_and_overrides(a))
    print(f"trained model written to {out}")


def _distill(a):
    from fastlight.train.command import train_command

    if a.recipe not in ("fastlightgen", "dmd2"):
        raise InputError(f"unknown distill recipe {a.recipe!r}: use fastlightgen (well-guided, pruned) or dmd2 "
                         "(step-only); Stage II recipes run with `fastlight train`")
    out = train_command(a.recipe, *_config_and_overrides(a))
    print(f"few-step generator written to {out} (sample it with `fastlight evaluate {out} --sampler few_step`)")


def _bench(a):
    from fastlight.evaluate.bench import bench_command

    bench_command(a.model, a.batch_size, a.repeats, a.warmup, a.out, a.device, a.seed)


def _prune(a):
    from fastlight.prune import prune_command

    prune_command(a.model, a.plan, a.out, overwrite=a.overwrite)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastlight", description="Distil a video DiT's steps and size together.")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("pretrain", help="train a denoiser from random weights (the embedded Shapes teacher)")
    s.add_argument("config", help="YAML recipe, e.g. configs/shapes/pretrain.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=_pretrain)

    s = sub.add_parser("sample", help="generate a video")
    s.add_argument("--model", default="shapes-teacher", help="model folder or 'shapes-teacher'")
    s.add_argument("--prompt", required=True)
    s.add_argument("--image", default=None, help="first frame PNG (default: drawn from the prompt with --seed)")
    _sampler_args(s)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="clip.mp4", help=".mp4 (a .gif is written beside it)")
    s.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="onnx: run MODEL's transformer.onnx (from `fastlight export --format onnx`) with onnxruntime")
    s.set_defaults(fn=_sample)

    _info_parser(sub)

    s = sub.add_parser("demo", help="sample the shipped teacher on several prompts")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--model", default="shapes-teacher")
    _sampler_args(s)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_demo)

    s = sub.add_parser("analyze", help="Stage I: block importance (ELBO / metric drop) and width saliency")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--calib", type=int, default=64, help="calibration samples (same set for every block)")
    s.add_argument("--out", default="runs/analyze")
    s.add_argument("--methods", default="elbo", help="comma list of elbo, taylor, metric")
    s.add_argument("--iterative", action="store_true", help="also drop-and-rescore greedily")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data", default=None,
                   help="calibration data source (default: the one the model folder names), e.g. "
                        "'{_component_: latents, path: SHARDS}'; its calibration stream is used")
    s.add_argument("--latents", default=None, help="calibration latents .safetensors (x0, text[, image, ...])")
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--shift", type=float, default=None)
    s.add_argument("--device", default=None)
    s.add_argument("--metric", default=None, help="video metric for --methods metric (default: the model folder's)")
    s.add_argument("--metric-cases", type=int, default=16)
    s.add_argument("--metric-steps", type=int, default=20)
    s.add_argument("--metric-guidance", "--metric-cfg", dest="metric_guidance", type=float, default=4.0,
                   help="guidance scale w of the metric's samples")
    s.set_defaults(fn=_analyze)

    s = sub.add_parser("plan", help="blocks (depth) or heads/FFN units (width) to prune for a parameter ratio")
    s.add_argument("importance", help="importance.json (depth) or taylor.json (width) from `fastlight analyze`")
    s.add_argument("--model", default="shapes-teacher")
    s.add_argument("--ratio", type=float, required=True, help="fraction of the DiT's parameters to remove, e.g. 0.3")
    s.add_argument("--out", default="runs/plan.json")
    s.add_argument("--kind", default="depth", choices=["depth", "width"])
    s.add_argument("--no-keep-ends", action="store_true", help="allow dropping the first/last block")
    s.add_argument("--reference", default=None, choices=[None, "self", "iterative"])
    s.add_argument("--score", default="in", choices=["in", "out"])
    s.add_argument("--prune-heads", action="store_true", help="width: also drop heads (not exportable to stock Wan)")
    s.set_defaults(fn=_plan)

    s = sub.add_parser("evaluate", help="ShapesBench (+ VBench-style dimensions) of a Shapes model")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--out", default="runs/evaluate")
    _sampler_args(s)
    s.add_argument("--num-cases", type=int, default=320)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--skip", default="", help="comma list of block ids to skip")
    s.add_argument("--no-videos", action="store_true")
    s.add_argument("--no-vbench", action="store_true")
    s.set_defaults(fn=_evaluate)

    _vbench_parser(sub)
    _fvd_parser(sub)
    _report_parser(sub)

    s = sub.add_parser("preprocess", help="real videos -> VAE latents + text embeddings in safetensors shards")
    s.add_argument("videos_dir")
    s.add_argument("--captions", required=True, help="captions.jsonl: {\"video\": ..., \"caption\": ...} per line")
    s.add_argument("--vae", required=True, help="diffusers AutoencoderKLWan folder (or a pipeline folder with vae/)")
    s.add_argument("--out", required=True)
    s.add_argument("--num-frames", type=int, default=81)
    s.add_argument("--height", type=int, default=None)
    s.add_argument("--width", type=int, default=None)
    s.add_argument("--text-embeds", default=None, help="safetensors of precomputed (L, D) embeddings keyed by video id")
    s.add_argument("--text-encoder", default=None, help="a transformers T5/UMT5 folder to encode the captions")
    s.add_argument("--shard-size", type=int, default=64)
    s.set_defaults(fn=_preprocess)

    s = sub.add_parser("train", help="Stage II training with a recipe (dpp), resumable")
    s.add_argument("--recipe", required=True, help="dpp")
    s.add_argument("config", nargs="?", default=None, help="YAML recipe, e.g. configs/shapes/dpp.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=_train)

    s = sub.add_parser("distill", help="Stage III: DMD to a few-step generator (fastlightgen | dmd2), resumable")
    s.add_argument("--recipe", required=True, help="fastlightgen (well-guided teacher, pruned) or dmd2 (step-only)")
    s.add_argument("config", nargs="?", default=None, help="YAML recipe, e.g. configs/shapes/distill.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=_distill)

    s = sub.add_parser("bench", help="end-to-end time per video of several models, side by side")
    s.add_argument("--model", action="append", required=True,
                   help="PATH_OR_PRESET[:sampler=euler|few_step,steps=N,guidance=W,shift=S,timesteps=1000+750+500+250,"
                        "skip=1+2] (repeat); without options, the model's own sampler (its sampler.json)")
    s.add_argument("--batch-size", type=int, default=1)
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--out", default=None, help="write the rows as JSON here")
    s.add_argument("--device", default=None)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=_bench)

    s = sub.add_parser("prune", help="surgery: a smaller model of the same diffusers class from a plan")
    s.add_argument("model", help="model folder or 'shapes-teacher'")
    s.add_argument("--plan", required=True, help="plan JSON from `fastlight plan`")
    s.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=_prune)

    s = sub.add_parser("evaluate-teacher", help="the teacher's quality bar on held-out cases (oracle)")
    s.add_argument("--model", default="shapes-teacher")
    s.add_argument("--num-cases", type=int, default=320)
    _sampler_args(s)
    s.add_argument("--seed", type=int, default=10_000)
    s.add_argument("--out", default=None, help="write the figures as JSON here")
    s.add_argument("--record", action="store_true", help="also store the figures in the model's fastlight.json")
    s.set_defaults(fn=_evaluate_teacher)

    # verbs whose parsers live beside their code
    import importlib

    for mod in PARSER_MODULES:
        importlib.import_module(mod).add_parsers(sub)
    return p


PARSER_MODULES = ("fastlight.export.command", "fastlight.decoder.command", "fastlight.run.command")


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A FastlightError (bad input, a refused state) is one line on stderr and exit 2;
    Ctrl-C is exit 130; any other exception is a bug and propagates with its traceback."""
    if not sys.stdout.isatty():  # logs and pipes: give rich tables room instead of 80 columns
        os.environ.setdefault("COLUMNS", "160")
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except FastlightError as e:
        print(f"fastlight {args.verb}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastlight {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0


def _one_line(e: FastlightError) -> str:
    """The message on one line (a message that wraps a library's text may hold newlines)."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
