"""The Shapes world's oracle for a pipeline folder (fastlight/shapes/pipeline_bench.py), found through the
generic hook of fastlight/evaluate/real.py: which folders it claims, its world, cases, scores and pairs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fastlight.data import video as vio
from fastlight.errors import InputError
from fastlight.evaluate.real import ORACLE_GROUP, oracle_factories, pipeline_oracle
from fastlight.plugins import component
from fastlight.shapes import bench
from fastlight.shapes import world as shapes
from fastlight.shapes.pipeline_bench import ShapesPipelineOracle, folder_world, is_shapes_pipeline
from fastlight.shapes.pipeline_folder import latent_transformer, write_shapes_pipeline


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("oracle_pipes")
    small = latent_transformer(0, num_layers=1)
    return {w: write_shapes_pipeline(base / w, transformer=small, world=w) for w in ("v1", "v2")}


def test_the_hook_finds_the_shapes_oracle_without_the_entry_point_installed(folders, monkeypatch):
    import fastlight.evaluate.real as real

    monkeypatch.setattr(real, "registered", lambda group: {})  # no fastlight.pipeline_oracles metadata
    assert oracle_factories(folders["v2"]) == ["fastlight.shapes.pipeline_bench:pipeline_oracle"]
    oracle = pipeline_oracle(folders["v2"], num_frames=9, height=64, width=64, seed=3)
    assert isinstance(oracle, ShapesPipelineOracle) and oracle.seed == 3 and oracle.first_frames


def test_a_registered_factory_is_asked_first(folders, monkeypatch):
    import fastlight.evaluate.real as real

    seen = []

    def fake_component(group, ref):  # an oracle factory that records the call and claims nothing
        return (lambda *a, **k: seen.append(ref)) if group == ORACLE_GROUP else component(group, ref)

    monkeypatch.setattr(real, "registered", lambda group: {"x": "tests:never"} if group == ORACLE_GROUP else {})
    monkeypatch.setattr(real, "component", fake_component)
    assert pipeline_oracle(folders["v2"], num_frames=9, height=64, width=64) is None  # both factories said None
    assert seen == ["tests:never", "fastlight.shapes.pipeline_bench:pipeline_oracle"]


def test_only_shapes_folders_are_claimed(folders, tiny_pipeline):
    wan = tiny_pipeline("wan22-ti2v")
    assert is_shapes_pipeline(folders["v1"]) and not is_shapes_pipeline(wan)
    assert pipeline_oracle(wan, num_frames=5, height=32, width=32) is None


def test_the_world_is_the_text_encoders_at_the_evaluation_frame_count(folders):
    v2 = folder_world(folders["v2"], 9)
    assert v2 == shapes.world_from_name("v2", num_frames=9)
    v1 = folder_world(folders["v1"], 9)
    assert (v1.name, v1.size, v1.num_frames) == ("v1", 64, 9)  # the v1 rules at the pipeline's 64 px
    with pytest.raises(InputError, match="judges 64x64 videos"):
        pipeline_oracle(folders["v2"], num_frames=9, height=32, width=32)


def test_cases_scores_and_pairs(folders, tmp_path):
    oracle = pipeline_oracle(folders["v2"], num_frames=9, height=64, width=64)
    prompts, files = oracle.cases(3, tmp_path / "cases")
    cases = bench.make_cases(3, oracle.world, split="test")
    assert prompts == [c.prompt for c in cases]
    for f, c in zip(files, cases):  # the first frames, as the pipeline will read them
        assert np.array_equal(np.asarray(Image.open(f)), vio.to_uint8_frames(c.image[:, None])[0])
    ideal = [vio.to_uint8_frames(v) for v in bench.ideal_videos(cases, oracle.world)]
    good = oracle.score(ideal)
    assert good["score"] > 0.95 and good["interval"]["low"] <= good["score"] <= good["interval"]["high"]
    assert good["num_cases"] == 3 and good["split"] == "test" and "per_case" in good
    bad = oracle.score([np.full_like(v, 128) for v in ideal])  # grey videos: nothing the prompt asks for
    assert bad["score"] < good["score"] - 0.3
    pair = oracle.paired(bad, good)
    assert pair["score"]["high"] < 0 and pair["score"]["estimate"] == pytest.approx(bad["score"] - good["score"])
    with pytest.raises(InputError, match="2 videos for 3"):
        oracle.score(ideal[:2])
    desc = oracle.describe()
    assert desc["oracle"] == "check_clip_v2" and desc["num_cases"] == 3 and desc["ideal"]["score"] > 0.95


def test_validation_cases_are_other_cases_than_the_test_ones(folders, tmp_path):
    """split=validation (where a guidance or checkpoint is chosen) draws ShapesBench's validation stream; the
    default stays the test stream, what a choice is reported on; anything else is a one-line error."""
    val = pipeline_oracle(folders["v2"], num_frames=9, height=64, width=64, split="validation")
    prompts, _ = val.cases(4, tmp_path / "val")
    assert prompts == [c.prompt for c in bench.make_cases(4, val.world, split="validation")]
    test_prompts, _ = pipeline_oracle(folders["v2"], num_frames=9, height=64, width=64).cases(4, tmp_path / "test")
    assert prompts != test_prompts
    ideal = [vio.to_uint8_frames(v) for v in bench.ideal_videos(val._cases, val.world)]
    assert val.score(ideal)["split"] == "validation" and val.describe()["split"] == "validation"
    with pytest.raises(InputError, match="split must be validation"):
        pipeline_oracle(folders["v2"], num_frames=9, height=64, width=64, split="train")


def test_shapesbench_on_a_pipeline_folder_points_at_the_pipeline_path(folders, tmp_path, capsys):
    from fastlight.cli import main

    capsys.readouterr()
    assert main(["evaluate", str(folders["v2"]), "--num-cases", "2", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--pipeline {folders['v2']}" in err and not (tmp_path / "ev").exists()
