"""Bad input at the CLI (issue 18): every case is exit code 2, exactly one line on stderr naming the
problem, no traceback, and nothing written (the folder the case works in is unchanged).

One case per class of the issue: results that were wrong with exit 0 (weights that disagree with
config.json, non-finite options, an empty recipe), tracebacks (unusable output paths, config numbers
out of range, files that are not safetensors, pickle-only component folders), partial state (bad
stage overrides, unknown or unready stages, a folder of unusable videos), messages that did not name
the option or the file; and the classes that already held, so they keep holding. Cases run in-process
(`fastlight.cli.main`); two run as real subprocesses to show no traceback reaches stderr.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import fastlight
from fastlight.cli import main

ASSETS = Path(fastlight.__file__).parent / "assets"
PROMPT = "a red circle staying still"
# a run small enough that a case which wrongly starts working finishes quickly
TINY_RUN = ["calib=2", "eval_cases=2", "teacher_steps=2", "bench_repeats=1", "metric_cases=2", "stage2.steps=2",
            "stage2.batch_size=2", "stage3.steps=2", "stage3.batch_size=1", "stage3.critic_steps=1"]


@pytest.fixture(scope="module")
def w(tmp_path_factory, shapes_model_factory):
    """The shared inputs, outside every case's own folder: good and broken model folders, files."""
    root = tmp_path_factory.mktemp("bad_inputs")
    ns = {"root": root}
    ns["model"] = shapes_model_factory(root / "model", num_layers=2)
    # config.json disagrees with the weights, both ways
    four = shapes_model_factory(root / "four", num_layers=4)
    ns["more_weights"] = _with_config(four, root / "more_weights", num_layers=2)  # 4 blocks stored, 2 configured
    ns["fewer_weights"] = _with_config(ns["model"], root / "fewer_weights", num_layers=4)
    bad_sampler = root / "bad_sampler"
    shutil.copytree(ns["model"], bad_sampler)
    (bad_sampler / "sampler.json").write_text('{"sampler": "euler", "num_steps": 4,')  # cut short
    ns["bad_sampler"] = bad_sampler
    bad_config = root / "bad_config"
    shutil.copytree(ns["model"], bad_config)
    (bad_config / "config.json").write_text("{not json")
    ns["bad_config"] = bad_config
    other_class = root / "other_class"
    shutil.copytree(ns["model"], other_class)
    _with_config(other_class, other_class, _class_name="UNet2DModel")
    ns["other_class"] = other_class
    pickle_only = root / "pickle_only"
    shutil.copytree(ns["model"], pickle_only)
    (pickle_only / "diffusion_pytorch_model.safetensors").rename(pickle_only / "diffusion_pytorch_model.bin")
    ns["pickle_only"] = pickle_only
    # a file named .safetensors that holds random bytes
    rnd = root / "random.safetensors"
    rnd.write_bytes(os.urandom(4096))
    ns["random_latents"] = rnd
    # a VAE folder holding only a pickle .bin
    vae_bin = root / "vae_bin"
    vae_bin.mkdir()
    shutil.copy(ASSETS / "shapes_vae" / "config.json", vae_bin / "config.json")
    torch.save({"w": torch.zeros(1)}, vae_bin / "diffusion_pytorch_model.bin")
    ns["vae_bin"] = vae_bin
    # preprocess inputs: two "videos" that are not videos, their captions and text embeddings
    videos = root / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        (videos / f"{name}.mp4").write_bytes(b"not a video" * 10)
    captions = root / "captions.jsonl"
    captions.write_text('{"video": "a.mp4", "caption": "x"}\n{"video": "b.mp4", "caption": "y"}\n')
    embeds = root / "embeds.safetensors"
    save_file({"a": torch.zeros(3, 8), "b": torch.zeros(3, 8)}, str(embeds))
    ns.update(videos=videos, captions=captions, embeds=embeds)
    # a bare recipe for `fastlight run`
    recipe = root / "recipe.yaml"
    recipe.write_text("method: fastlightgen\n")
    ns["recipe"] = recipe
    empty = root / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    ns["empty"] = empty
    listy = root / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    ns["list_yaml"] = listy
    broken_yaml = root / "broken.yaml"
    broken_yaml.write_text("steps: [1, 2\n")
    ns["broken_yaml"] = broken_yaml
    not_json = root / "importance.json"
    not_json.write_text("{oops")
    ns["not_json"] = not_json
    array_json = root / "array.json"
    array_json.write_text("[1, 2]")
    ns["array_json"] = array_json
    return type("W", (), ns)


def _with_config(src: Path, dst: Path, **changes) -> Path:
    if dst != src:
        shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def _taken(t: Path) -> Path:
    """A plain file in the case's folder, for output paths that go through or onto a file."""
    (t / "taken").write_text("x")
    return t / "taken"


def _run_args(w, t, *extra):
    return ["run", str(w.recipe), f"out={t / 'r'}", f"teacher={w.model}", *TINY_RUN, *extra]


# (id, argv builder (w, t) -> argv, a phrase the one line must hold)
CASES = [
    # 1. wrong results with exit 0
    ("config-fewer-layers-than-weights", lambda w, t: ["info", str(w.more_weights)], "config.json has no place for"),
    ("config-more-layers-than-weights", lambda w, t: ["info", str(w.fewer_weights)], "lack"),
    ("sample-guidance-nan", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--guidance", "nan",
                                          "--out", str(t / "c.mp4")], "--guidance"),
    ("sample-guidance-inf", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--cfg", "inf",
                                          "--out", str(t / "c.mp4")], "not a finite number"),
    ("sample-shift-nan", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--shift", "nan",
                                       "--out", str(t / "c.mp4")], "--shift"),
    ("sample-timesteps-nan", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--sampler",
                                           "few_step", "--timesteps", "1000,nan", "--out", str(t / "c.mp4")],
     "--timesteps"),
    ("plan-ratio-nan", lambda w, t: ["plan", str(w.not_json), "--model", str(w.model), "--ratio", "nan",
                                     "--out", str(t / "p.json")], "--ratio"),
    ("analyze-metric-guidance-inf", lambda w, t: ["analyze", str(w.model), "--metric-guidance", "inf",
                                                  "--out", str(t / "a")], "--metric-guidance"),
    ("search-budget-nan", lambda w, t: ["search", str(w.model), "--budget-ms", "nan", "--out", str(t / "s")],
     "--budget-ms"),
    ("run-empty-recipe", lambda w, t: ["run", str(w.empty), f"out={t / 'r'}"], "is empty"),
    ("train-empty-recipe", lambda w, t: ["train", "--recipe", "dpp", str(w.empty), f"out={t / 'r'}"], "is empty"),
    ("run-only-comma", lambda w, t: [*_run_args(w, t), "--only", ","], "--only names no stage"),
    ("run-only-empty", lambda w, t: [*_run_args(w, t), "--only", ""], "--only names no stage"),
    ("pretrain-lr-nan", lambda w, t: ["pretrain", "configs/shapes/pretrain.yaml", "lr=nan", f"out={t / 'r'}"],
     "finite"),
    ("train-lr-inf", lambda w, t: ["train", "--recipe", "dpp", "lr=.inf", f"out={t / 'r'}"], "lr must be a finite number"),
    ("run-cfg-scale-nan", lambda w, t: _run_args(w, t, "cfg_scale=nan"), "cfg_scale"),
    # 2. tracebacks: unusable output paths, numbers out of range, unreadable files
    ("sample-out-through-a-file", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--steps", "1",
                                                "--out", str(_taken(t) / "c.mp4")], "taken"),
    ("plan-out-through-a-file", lambda w, t: ["plan", str(w.not_json), "--model", str(w.model), "--ratio", "0.3",
                                              "--out", str(_taken(t) / "p.json")], "--out"),
    ("plan-out-an-existing-file", lambda w, t: ["plan", str(w.not_json), "--model", str(w.model), "--ratio", "0.3",
                                                "--out", str(_taken(t))], "a file of that name exists"),
    ("prune-out-an-existing-file", lambda w, t: ["prune", str(w.model), "--plan", str(w.array_json),
                                                 "--out", str(_taken(t))], "taken"),
    ("report-out-through-a-file", lambda w, t: ["report", str(w.root), "--out", str(_taken(t) / "rep")], "taken"),
    ("report-out-an-existing-file", lambda w, t: ["report", str(w.root), "--out", str(_taken(t))],
     "a file of that name exists"),
    ("run-out-through-a-file", lambda w, t: ["run", str(w.recipe), f"out={_taken(t) / 'r'}", *TINY_RUN], "taken"),
    ("run-out-an-existing-file", lambda w, t: ["run", str(w.recipe), f"out={_taken(t)}", *TINY_RUN],
     "a file of that name exists"),
    ("evaluate-out-through-a-file", lambda w, t: ["evaluate", str(w.model), "--num-cases", "1",
                                                  "--out", str(_taken(t) / "e")], "taken"),
    ("evaluate-out-an-existing-file", lambda w, t: ["evaluate", str(w.model), "--num-cases", "1",
                                                    "--out", str(_taken(t))], "a file of that name exists"),
    ("bench-out-a-folder", lambda w, t: ["bench", "--model", str(w.model), "--repeats", "1", "--out", str(t)],
     "is a folder"),
    ("vbench-out-a-folder", lambda w, t: ["vbench", str(w.videos), "--out", str(t)], "is a folder"),
    ("evaluate-teacher-out-through-a-file", lambda w, t: ["evaluate-teacher", "--model", str(w.model),
                                                          "--out", str(_taken(t) / "t.json")], "taken"),
    ("export-out-through-a-file", lambda w, t: ["export", str(w.model), "--format", "diffusers",
                                                "--out", str(_taken(t) / "x")], "taken"),
    ("demo-out-an-existing-file", lambda w, t: ["demo", "--model", str(w.model), "--out", str(_taken(t))],
     "a file of that name exists"),
    ("prune-decoder-out-through-a-file", lambda w, t: ["prune-decoder", str(ASSETS / "shapes_vae"), "--ratio", "0.5",
                                                       "--out", str(_taken(t) / "d")], "taken"),
    ("search-out-an-existing-file", lambda w, t: ["search", str(w.model), "--budget-ms", "100",
                                                  "--out", str(_taken(t))], "a file of that name exists"),
    ("preprocess-out-through-a-file", lambda w, t: ["preprocess", str(w.videos), "--captions", str(w.captions),
                                                    "--vae", str(ASSETS / "shapes_vae"), "--text-embeds",
                                                    str(w.embeds), "--out", str(_taken(t) / "s")], "taken"),
    ("analyze-out-an-existing-file", lambda w, t: ["analyze", str(w.model), "--calib", "2", "--out", str(_taken(t))],
     "--out"),
    ("train-threads-0", lambda w, t: ["train", "--recipe", "dpp", "threads=0", f"out={t / 'r'}"], "threads must be >= 1"),
    ("train-batch-size-0", lambda w, t: ["train", "--recipe", "dpp", "batch_size=0", f"out={t / 'r'}"],
     "batch_size must be >= 1"),
    ("pretrain-steps-negative", lambda w, t: ["pretrain", "configs/shapes/pretrain.yaml", "steps=-3",
                                              f"out={t / 'r'}"], "steps must be >= 1"),
    ("distill-beta2-1", lambda w, t: ["distill", "--recipe", "dmd2", "beta2=1", f"out={t / 'r'}"], "beta2"),
    ("distill-cfg-dropout-2", lambda w, t: ["distill", "--recipe", "dmd2", "cfg_dropout=2", f"out={t / 'r'}"],
     "cfg_dropout"),
    ("decoder-batch-size-0", lambda w, t: ["distill-decoder", "configs/shapes/decoder.yaml", "batch_size=0",
                                           f"out={t / 'r'}"], "batch_size must be >= 1"),
    ("run-threads-0", lambda w, t: _run_args(w, t, "threads=0"), "threads must be >= 1"),
    ("run-stage2-batch-size-0", lambda w, t: _run_args(w, t, "stage2.batch_size=0"), "batch_size must be >= 1"),
    ("analyze-random-bytes-latents", lambda w, t: ["analyze", str(w.model), "--calib", "2", "--latents",
                                                   str(w.random_latents), "--out", str(t / "a")],
     "not a readable safetensors file"),
    ("preprocess-pickle-only-vae", lambda w, t: ["preprocess", str(w.videos), "--captions", str(w.captions), "--vae",
                                                 str(w.vae_bin), "--text-embeds", str(w.embeds), "--num-frames", "5",
                                                 "--height", "16", "--width", "16", "--out", str(t / "shards")],
     "no *.safetensors"),
    ("preprocess-random-bytes-embeds", lambda w, t: ["preprocess", str(w.videos), "--captions", str(w.captions),
                                                     "--vae", str(ASSETS / "shapes_vae"), "--text-embeds",
                                                     str(w.random_latents), "--out", str(t / "shards")],
     "not a readable safetensors file"),
    ("model-pickle-only", lambda w, t: ["info", str(w.pickle_only)], "no *.safetensors"),
    # 3. partial state
    ("run-bad-stage2-override", lambda w, t: _run_args(w, t, "stage2.bogus=1"), "bogus"),
    ("run-bad-stage3-value", lambda w, t: _run_args(w, t, "stage3.lr=abc"), "lr"),
    ("run-only-unknown-stage", lambda w, t: [*_run_args(w, t), "--only", "nope"], "unknown stage 'nope'"),
    ("run-only-stage-not-ready", lambda w, t: [*_run_args(w, t), "--only", "4_stage3"],
     "stage 3_stage2 has not run"),
    ("preprocess-every-video-bad", lambda w, t: ["preprocess", str(w.videos), "--captions", str(w.captions), "--vae",
                                                 str(ASSETS / "shapes_vae"), "--text-embeds", str(w.embeds),
                                                 "--num-frames", "5", "--height", "16", "--width", "16",
                                                 "--out", str(t / "shards")], "a.mp4"),
    # 6. messages that name the option, the file and the fix
    ("evaluate-skip-not-numbers", lambda w, t: ["evaluate", str(w.model), "--skip", "a,b", "--out", str(t / "e")],
     "--skip"),
    ("sample-steps-not-a-number", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--steps",
                                                "a,b", "--out", str(t / "c.mp4")], "argument --steps"),
    ("search-steps-not-numbers", lambda w, t: ["search", str(w.model), "--budget-ms", "100", "--steps", "a,b",
                                               "--out", str(t / "s")], "argument --steps"),
    ("search-ratios-not-numbers", lambda w, t: ["search", str(w.model), "--budget-ms", "100", "--ratios", "x",
                                                "--out", str(t / "s")], "argument --ratios"),
    ("analyze-calib-not-a-number", lambda w, t: ["analyze", str(w.model), "--calib", "ten", "--out", str(t / "a")],
     "argument --calib"),
    ("unknown-option", lambda w, t: ["info", str(w.model), "--bogus"], "--bogus"),
    ("unknown-verb", lambda w, t: ["frobnicate"], "invalid choice"),
    ("malformed-sampler-json", lambda w, t: ["sample", "--model", str(w.bad_sampler), "--prompt", PROMPT,
                                             "--out", str(t / "c.mp4")], "sampler.json is not valid JSON"),
    # classes that already held
    ("model-folder-missing", lambda w, t: ["info", str(t / "missing")], "does not exist"),
    ("model-config-not-json", lambda w, t: ["info", str(w.bad_config)], "config.json is not valid JSON"),
    ("model-class-unsupported", lambda w, t: ["info", str(w.other_class)], "UNet2DModel"),
    ("model-path-is-a-file", lambda w, t: ["info", str(w.recipe)], "is a file"),
    ("plan-importance-missing", lambda w, t: ["plan", str(t / "none.json"), "--model", str(w.model), "--ratio", "0.3",
                                              "--out", str(t / "p.json")], "does not exist"),
    ("plan-importance-not-json", lambda w, t: ["plan", str(w.not_json), "--model", str(w.model), "--ratio", "0.3",
                                               "--out", str(t / "p.json")], "is not valid JSON"),
    ("plan-ratio-out-of-range", lambda w, t: ["plan", str(w.not_json), "--model", str(w.model), "--ratio", "1.5",
                                              "--out", str(t / "p.json")], "ratio"),
    ("prune-plan-not-an-object", lambda w, t: ["prune", str(w.model), "--plan", str(w.array_json),
                                               "--out", str(t / "p")], "JSON object"),
    ("sample-out-wrong-suffix", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT,
                                              "--out", str(t / "c.avi")], ".mp4 or .gif"),
    ("sample-steps-0", lambda w, t: ["sample", "--model", str(w.model), "--prompt", PROMPT, "--steps", "0",
                                     "--out", str(t / "c.mp4")], "steps must be >= 1"),
    ("run-unknown-method", lambda w, t: _run_args(w, t, "method=distill"), "method must be one of"),
    ("run-unknown-preset", lambda w, t: _run_args(w, t, "preset=huge"), "preset must be quick or full"),
    ("run-prune-ratio-out-of-range", lambda w, t: _run_args(w, t, "prune_ratio=2"), "prune_ratio"),
    ("run-dotted-override-elsewhere", lambda w, t: _run_args(w, t, "stage4.steps=1"), "only stage2.KEY=VALUE"),
    ("run-recipe-missing", lambda w, t: ["run", str(t / "nope.yaml"), f"out={t / 'r'}"], "does not exist"),
    ("train-recipe-a-list", lambda w, t: ["train", "--recipe", "dpp", str(w.list_yaml), f"out={t / 'r'}"],
     "must be a mapping"),
    ("train-recipe-broken-yaml", lambda w, t: ["train", "--recipe", "dpp", str(w.broken_yaml), f"out={t / 'r'}"],
     "not valid YAML"),
    ("train-override-without-equals", lambda w, t: ["train", "--recipe", "dpp", "configs/shapes/dpp.yaml", "steps",
                                                    f"out={t / 'r'}"], "key=value"),
    ("train-wrong-type", lambda w, t: ["train", "--recipe", "dpp", "steps=many", f"out={t / 'r'}"], "must be a int"),
    ("preprocess-captions-missing", lambda w, t: ["preprocess", str(w.videos), "--captions", str(t / "none.jsonl"),
                                                  "--vae", str(w.vae_bin), "--text-embeds", str(w.embeds),
                                                  "--out", str(t / "shards")], "captions file"),
    ("report-no-results", lambda w, t: ["report", str(w.videos), "--out", str(t / "rep")], "no shapesbench.json"),
    ("vbench-folder-missing", lambda w, t: ["vbench", str(t / "none")], "not a folder of videos"),
]


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own exits (a bug here: usage errors are one line and a return code)
        return e.code


@pytest.mark.parametrize("build,needle", [pytest.param(b, n, id=i) for i, b, n in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(w, tmp_path, capsys, build, needle):
    t = tmp_path / "case"
    t.mkdir()
    argv = build(w, t)
    before, shared = _listing(t), _listing(w.root)
    capsys.readouterr()
    rc = _cli(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("fastlight") and needle in lines[0], lines[0]
    assert _listing(t) == before and _listing(w.root) == shared


def test_there_are_enough_distinct_cases():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) >= 50


@pytest.mark.parametrize("argv,needle", [
    (["sample", "--prompt", PROMPT, "--steps", "a,b"], "argument --steps"),
    (["train", "--recipe", "dpp", "threads=0"], "threads must be >= 1"),
], ids=["usage-error", "config-error"])
def test_no_traceback_reaches_a_real_stderr(tmp_path, argv, needle):
    r = subprocess.run([sys.executable, "-m", "fastlight.cli", *argv], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1",
                                          "PYTHONPATH": str(Path(fastlight.__file__).parent.parent)})
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


# ---- fastlight report reads only regular files inside the run folder --------------------------------
def _evaluated_run(root: Path, grid: str | None = None) -> Path:
    run = root / "run"
    (run / "evaluate" / "teacher").mkdir(parents=True)
    doc = {"score": 0.5, "model": "m", "num_steps": 2, "files": [grid] if grid else []}
    (run / "evaluate" / "teacher" / "shapesbench.json").write_text(json.dumps(doc))
    return run


def test_report_skips_a_symlinked_importance_png(tmp_path, capsys):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG not really, and outside the run folder")
    run = _evaluated_run(tmp_path)
    (run / "1_analyze").mkdir()
    (run / "1_analyze" / "importance.png").symlink_to(secret)
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 file(s)" in printed and "1_analyze/importance.png (a symbolic link" in printed
    doc = json.loads((run / "report" / "report.json").read_text())
    assert [s["file"] for s in doc["skipped"]] == ["1_analyze/importance.png"]
    assert doc["files"]["importance"] == []
    assert "not really" not in (run / "report" / "report.html").read_text()


@pytest.mark.parametrize("name", ["ABSOLUTE", "../../outside/grid.gif", "link/grid.gif"])
def test_report_does_not_open_grid_paths_outside_the_run_folder(tmp_path, capsys, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "grid.gif").write_bytes(b"GIF89a not really")
    grid = str(outside / "grid.gif") if name == "ABSOLUTE" else name
    run = _evaluated_run(tmp_path, grid)
    if name.startswith("link/"):
        (run / "evaluate" / "teacher" / "link").symlink_to(outside, target_is_directory=True)
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "grid.gif" in printed
    doc = json.loads((run / "report" / "report.json").read_text())
    assert doc["samples_gif"] is None and any("grid.gif" in s["file"] for s in doc["skipped"])


# ---- the one readers: a bad file is one project error naming it ------------------------------------
def test_read_json_object_and_read_safetensors_name_the_file(tmp_path):
    from fastlight.errors import DataError, MissingFileError, SamplerError
    from fastlight.fileio import read_json_object, read_safetensors

    (tmp_path / "a.json").write_text("[1]")
    with pytest.raises(SamplerError, match=r"a\.json must be a JSON object .*; fix it"):
        read_json_object(tmp_path / "a.json", SamplerError, "fix it")
    (tmp_path / "b.json").write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="b.json is not UTF-8"):
        read_json_object(tmp_path / "b.json")
    with pytest.raises(MissingFileError, match="c.json does not exist"):
        read_json_object(tmp_path / "c.json")
    with pytest.raises(DataError, match="is a folder"):
        read_safetensors(tmp_path)
    save_file({"x": torch.ones(2)}, str(tmp_path / "ok.safetensors"))
    assert read_safetensors(tmp_path / "ok.safetensors")["x"].tolist() == [1.0, 1.0]


def test_atomic_write_onto_a_folder_is_one_line_and_leaves_it(tmp_path):
    from fastlight.errors import PathError
    from fastlight.fileio import atomic_write_json

    (tmp_path / "d").mkdir()
    with pytest.raises(PathError, match="is a folder"):
        atomic_write_json(tmp_path / "d", {"a": 1})
    assert (tmp_path / "d").is_dir() and _listing(tmp_path) == ["d"]
