"""Bad input to `fastlight export` / `fastlight sample --backend onnx`: one line, exit code 2, and
nothing half-written (no output folder, no hidden temp folder, an existing folder untouched)."""
import json

import pytest

from fastlight.cli import main


def run_bad(argv, capsys, *needles):
    capsys.readouterr()  # what fixtures printed (e.g. building a tiny pipeline) is not the command's
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def no_temp_left(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".") and (".tmp" in p.name or ".old" in p.name)]


@pytest.fixture(scope="module")
def model(tmp_path_factory, shapes_model_factory):
    return shapes_model_factory(tmp_path_factory.mktemp("m") / "model", num_layers=1)


@pytest.mark.parametrize("fmt", ["diffusers", "onnx"])
def test_run_without_finished_generator(tmp_path, capsys, fmt):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_100").mkdir(parents=True)
    run_bad(["export", str(run), "--format", fmt, "--out", str(tmp_path / "out")], capsys,
            "fastlight export: error:", "no finished generator")
    assert not (tmp_path / "out").exists() and no_temp_left(tmp_path)


def test_missing_run(tmp_path, capsys):
    run_bad(["export", str(tmp_path / "nope"), "--format", "diffusers", "--out", str(tmp_path / "o")], capsys,
            "does not exist")


def test_non_empty_out_is_refused_unless_overwrite(model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    run_bad(["export", str(model), "--format", "diffusers", "--out", str(out)], capsys, "not empty", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and no_temp_left(tmp_path)
    assert main(["export", str(model), "--format", "diffusers", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "model_index.json").is_file() and no_temp_left(tmp_path)
    # an empty existing folder is fine without --overwrite
    (tmp_path / "empty").mkdir()
    assert main(["export", str(model), "--format", "diffusers", "--out", str(tmp_path / "empty")]) == 0


def test_out_inside_the_model_is_refused(model, capsys):
    run_bad(["export", str(model), "--format", "diffusers", "--out", str(model), "--overwrite"], capsys,
            "would overwrite the model")
    assert (model / "config.json").is_file()


@pytest.mark.parametrize("opset,needle", [(30, "cannot run it"), (12, "opset >= 18")])
def test_opset_onnxruntime_cannot_run(model, tmp_path, capsys, opset, needle):
    pytest.importorskip("onnxruntime")
    run_bad(["export", str(model), "--format", "onnx", "--out", str(tmp_path / "o"), "--opset", str(opset)],
            capsys, needle)
    assert not (tmp_path / "o").exists() and no_temp_left(tmp_path)


def test_onnx_needs_latent_sizes_for_non_shapes_models(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from fastlight.models.wan import WanDenoiser, tiny_wan_config

    WanDenoiser.from_config(**tiny_wan_config()).save(tmp_path / "wan")
    run_bad(["export", str(tmp_path / "wan"), "--format", "onnx", "--out", str(tmp_path / "o")], capsys,
            "--frames --height --width --text-len")
    run_bad(["export", str(tmp_path / "wan"), "--format", "onnx", "--out", str(tmp_path / "o"), "--frames", "2",
             "--height", "5", "--width", "4", "--text-len", "3"], capsys, "multiples of the patch size")


def test_sample_backend_onnx_without_onnx_file(model, tmp_path, capsys):
    run_bad(["sample", "--model", str(model), "--backend", "onnx", "--prompt", "a red circle moving left quickly",
             "--out", str(tmp_path / "c.mp4")], capsys, "has no transformer.onnx", "fastlight export")
    assert not (tmp_path / "c.mp4").exists()


# ---- real-family students (the tiny pipelines): the source pipeline ------------------------------
@pytest.fixture(scope="module")
def orphan(tiny_pipeline, student_maker, tmp_path_factory):
    """A pruned few-step Wan 2.1 student whose fastlight.json names no teacher (nor pruned_from)."""
    return student_maker(tiny_pipeline("wan21-t2v"), tmp_path_factory.mktemp("orphan"), [2], teacher=None)


def test_real_student_without_a_source_pipeline(orphan, tmp_path, capsys):
    run_bad(["export", str(orphan), "--format", "diffusers", "--out", str(tmp_path / "o")], capsys,
            "found no source pipeline", "--source PIPELINE")
    assert not (tmp_path / "o").exists() and no_temp_left(tmp_path)


def test_real_student_whose_teacher_is_not_a_pipeline(tiny_pipeline, student_maker, tmp_path, capsys):
    bare = tmp_path / "bare_teacher"  # a model folder, not a pipeline: no VAE or text encoder to link
    bare.mkdir()
    (bare / "fastlight.json").write_text("{}")
    run = student_maker(tiny_pipeline("wan21-t2v"), tmp_path / "run", [2], teacher=bare)
    run_bad(["export", str(run), "--format", "diffusers", "--out", str(tmp_path / "o")], capsys, "--source PIPELINE")


def fake_source(tmp_path, pipeline, **config):
    """A pipeline folder's model_index.json and transformer/config.json (with `config` changed): all the
    source check reads."""
    src = tmp_path / "fake_source"
    (src / "transformer").mkdir(parents=True)
    (src / "model_index.json").write_text((pipeline / "model_index.json").read_text())
    cfg = json.loads((pipeline / "transformer" / "config.json").read_text())
    (src / "transformer" / "config.json").write_text(json.dumps({**cfg, **config}))
    return src


@pytest.mark.parametrize("source,needles", [
    ("hunyuan-t2v", ("holds a HunyuanVideoPipeline", "WanTransformer3DModel")),
    ("wan22-ti2v", ("does not fit the student", "in_channels 16 vs 48")),
    ("text_dim", ("does not fit the student", "text_dim 32 vs 64")),
])
def test_source_of_another_family_or_interface(orphan, tiny_pipeline, tmp_path, capsys, source, needles):
    src = (fake_source(tmp_path, tiny_pipeline("wan21-t2v"), text_dim=64) if source == "text_dim"
           else tiny_pipeline(source))
    run_bad(["export", str(orphan), "--format", "diffusers", "--out", str(tmp_path / "o"), "--source", str(src)],
            capsys, *needles)
    assert not (tmp_path / "o").exists() and no_temp_left(tmp_path)


def test_hunyuan_student_grid_the_pipeline_cannot_run(tiny_pipeline, student_maker, tmp_path, capsys):
    run = student_maker(tiny_pipeline("hunyuan-t2v"), tmp_path / "run", [1], timesteps=(1000, 900, 300, 250))
    run_bad(["export", str(run), "--format", "diffusers", "--out", str(tmp_path / "o")], capsys,
            "1000/900/300/250 are not a shifted, stretched linspace(1, 0, K + 1)[:-1]")
    assert not (tmp_path / "o").exists()
