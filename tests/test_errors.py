"""The project's own error types (fastlight/errors.py, DESIGN.md section 3): a FastlightError is one
line on stderr and exit 2 at the CLI; any other exception is a bug and keeps its traceback."""
import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastlight
import fastlight.info
from fastlight import errors
from fastlight.cli import main

ROOT = Path(fastlight.__file__).parent
# exception classes that are not "bad input": an optional package's absence, turned into an
# InputError where a verb needs the package
NOT_PROJECT_ERRORS = {"fastlight.evaluate.vbench.official.VBenchUnavailable"}


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _exception_classes():
    """Every class defined in the package whose bases name an *Error or *Exception (found by ast,
    then imported, so a new error type anywhere is checked)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    (b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")).endswith(("Error", "Exception"))
                    for b in node.bases):
                mod = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
                found.append((mod, node.name))
    return found


def test_every_project_error_type_derives_from_fastlight_error():
    classes = _exception_classes()
    names = {name for _, name in classes}
    # the types the code raises (the two DataErrors are one now)
    assert {"ConfigError", "PromptError", "ModelError", "DataError", "PluginError", "SamplerError",
            "CollapseError", "PlanError", "InputError", "NonFiniteError"} <= names
    bad = []
    for mod, name in classes:
        if f"{mod}.{name}" in NOT_PROJECT_ERRORS:
            continue
        cls = getattr(importlib.import_module(mod), name)
        if not issubclass(cls, errors.FastlightError):
            bad.append(f"{mod}.{name}")
    assert bad == []


def test_one_data_error_and_the_old_names_still_import():
    from fastlight.config import ConfigError
    from fastlight.data.latents import DataError as LatentsDataError
    from fastlight.data.source import DataError as SourceDataError
    from fastlight.diffusion.spec import SamplerError
    from fastlight.distill.dmd import CollapseError
    from fastlight.models.denoiser import ModelError
    from fastlight.plugins import PluginError
    from fastlight.shapes.text import PromptError

    assert LatentsDataError is SourceDataError is errors.DataError
    assert (ConfigError, ModelError, PluginError, SamplerError, CollapseError) == (
        errors.ConfigError, errors.ModelError, errors.PluginError, errors.SamplerError, errors.CollapseError)
    assert issubclass(PromptError, errors.InputError)


@pytest.mark.parametrize("cls,builtin", [
    (errors.InputError, ValueError), (errors.ConfigError, ValueError), (errors.ModelError, ValueError),
    (errors.DataError, ValueError), (errors.PluginError, ValueError), (errors.SamplerError, ValueError),
    (errors.PlanError, ValueError), (errors.MissingFileError, FileNotFoundError),
    (errors.OutputExistsError, FileExistsError), (errors.PathError, OSError),
    (errors.NonFiniteError, FloatingPointError), (errors.CollapseError, RuntimeError),
])
def test_each_kind_keeps_the_builtin_it_replaced(cls, builtin):
    e = cls("x is wrong: give y")
    assert isinstance(e, errors.FastlightError) and isinstance(e, builtin) and str(e) == "x is wrong: give y"


def _raising(exc):
    def f(*args, **kwargs):
        raise exc
    return f


@pytest.mark.parametrize("exc", [errors.ModelError("model m is odd: re-export it"),
                                 errors.NonFiniteError("non-finite loss at step 3: lower lr"),
                                 errors.MissingFileError("plan p.json does not exist: run fastlight plan")])
def test_a_project_error_in_a_verb_is_one_line_and_exit_2(monkeypatch, capsys, exc):
    monkeypatch.setattr(fastlight.info, "model_info", _raising(exc))
    rc, out, err = _run(capsys, "info", "anything")
    assert rc == 2 and out == ""
    assert err == f"fastlight info: error: {exc}\n"


def test_a_multi_line_message_is_printed_on_one_line(monkeypatch, capsys):
    monkeypatch.setattr(fastlight.info, "model_info", _raising(errors.DataError("cannot read v.mp4 (bad\nheader)")))
    rc, _, err = _run(capsys, "info", "anything")
    assert rc == 2 and err == "fastlight info: error: cannot read v.mp4 (bad header)\n"


@pytest.mark.parametrize("exc", [ValueError("boom from deep inside torch"), FileNotFoundError("libfoo.so"),
                                 FloatingPointError("overflow"), RuntimeError("shape mismatch"), KeyError("k")])
def test_any_other_exception_is_a_bug_and_propagates(monkeypatch, capsys, exc):
    monkeypatch.setattr(fastlight.info, "model_info", _raising(exc))
    with pytest.raises(type(exc)) as got:
        main(["info", "anything"])
    assert got.value is exc
    assert capsys.readouterr().err == ""  # not dressed up as bad input


def test_a_bug_shows_its_traceback_and_does_not_exit_2(tmp_path):
    code = ("import fastlight.info, fastlight.cli\n"
            "def boom(path):\n    raise ValueError('a bug, not bad input')\n"
            "fastlight.info.model_info = boom\n"
            "raise SystemExit(fastlight.cli.main(['info', 'x']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tmp_path)
    assert r.returncode not in (0, 2)
    assert "Traceback" in r.stderr and "ValueError: a bug, not bad input" in r.stderr


def test_ctrl_c_is_exit_130(monkeypatch, capsys):
    monkeypatch.setattr(fastlight.info, "model_info", _raising(KeyboardInterrupt()))
    rc, _, err = _run(capsys, "info", "anything")
    assert rc == 130 and err == "fastlight info: interrupted\n"


# ---- representative bad inputs, one per layer: still one line and exit 2 ----------------------------
def _one_line_exit_2(capsys, argv, needle):
    rc, _, err = _run(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and needle in lines[0], err
    return lines[0]


def test_unknown_config_key(capsys, tmp_path):
    _one_line_exit_2(capsys, ["train", "--recipe", "dpp", "bogus_key=1", f"out={tmp_path / 'r'}"], "bogus_key")
    assert not (tmp_path / "r").exists()


def test_unknown_recipe(capsys):
    _one_line_exit_2(capsys, ["train", "--recipe", "nope"], "unknown recipe 'nope'")


def test_missing_model_folder(capsys, tmp_path):
    _one_line_exit_2(capsys, ["info", str(tmp_path / "missing")], "does not exist")


def test_bad_plan(capsys, tiny_shapes_model, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"type": "depth", "drop_blocks": [7]}))
    _one_line_exit_2(capsys, ["prune", str(tiny_shapes_model), "--plan", str(plan), "--out", str(tmp_path / "p")],
                     "plan")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args,needle", [
    (["--timesteps", "1000,abc"], "--timesteps"),
    (["--sampler", "few_step", "--timesteps", "250,750"], "strictly decreasing"),
    (["--shift", "-1"], "shift"),
])
def test_bad_sampler_override(capsys, tiny_shapes_model, tmp_path, args, needle):
    _one_line_exit_2(capsys, ["sample", "--model", str(tiny_shapes_model), "--prompt", "a red circle staying still",
                              "--out", str(tmp_path / "c.mp4"), *args], needle)
    assert not any(tmp_path.iterdir())


def test_bad_data_source(capsys, tmp_path):
    _one_line_exit_2(capsys, ["train", "--recipe", "pretrain", "data={_component_: no-such-source}",
                              f"out={tmp_path / 'r'}", "steps=1", "cpu=true"], "no-such-source")


def test_bad_evaluate_skip_list(capsys, tiny_shapes_model, tmp_path):
    _one_line_exit_2(capsys, ["evaluate", str(tiny_shapes_model), "--skip", "1,x", "--out", str(tmp_path / "e")],
                     "--skip")


# ---- an output path the user named that cannot be used -----------------------------------------------
def test_make_dir_names_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(errors.PathError, match=r"--out .*file/sub: cannot create it \(a part of the path is a file\)"):
        errors.make_dir(tmp_path / "file" / "sub", "--out")
    with pytest.raises(errors.PathError, match="a file of that name exists"):
        errors.make_dir(tmp_path / "file", "--out")
    assert errors.make_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


def test_sample_out_under_a_file_is_one_line(capsys, tiny_shapes_model, tmp_path):
    (tmp_path / "taken").write_text("x")
    line = _one_line_exit_2(capsys, ["sample", "--model", str(tiny_shapes_model), "--prompt",
                                     "a red circle staying still", "--steps", "1",
                                     "--out", str(tmp_path / "taken" / "c.mp4")], "--out")
    assert str(tmp_path / "taken" / "c.mp4") in line and "a file of that name exists" in line


def test_prune_out_under_a_file_is_one_line(capsys, tiny4, tmp_path):
    model, plan = tiny4
    (tmp_path / "taken").write_text("x")
    _one_line_exit_2(capsys, ["prune", str(model), "--plan", str(plan), "--out", str(tmp_path / "taken" / "p")],
                     str(tmp_path / "taken" / "p"))


def test_analyze_out_under_a_file_is_one_line_before_any_work(capsys, tiny_shapes_model, tmp_path):
    (tmp_path / "taken").write_text("x")
    out = str(tmp_path / "taken" / "o")
    line = _one_line_exit_2(capsys, ["analyze", str(tiny_shapes_model), "--calib", "2", "--methods", "elbo",
                                     "--out", out], "argument --out")
    assert out in line and "is a file" in line
