"""What a model folder is analysed with: its own fastlight.json first, then the plug-ins (Shapes)."""
import json

import pytest
import torch
from safetensors.torch import save_file

from analyze_helpers import wan_cond
from fastlight.analyze.defaults import model_defaults
from fastlight.analyze.importance import compute_importance, read_importance
from fastlight.cli import main
from fastlight.models.load import load_denoiser
from fastlight.models.wan import WanDenoiser, tiny_wan_config


def _model(meta=None, **config):
    torch.manual_seed(0)
    return WanDenoiser.from_config(**tiny_wan_config(**config), meta=meta)


def test_model_defaults_from_meta_then_plugins():
    assert model_defaults(_model()) == {}
    shapes = model_defaults(_model({"world": {"size": 24, "num_frames": 8}}))  # the Shapes plug-in's answer
    assert shapes == {"data": {"_component_": "shapes", "size": 24, "num_frames": 8, "image": True},
                      "metric": "shapes-oracle"}
    own = model_defaults(_model({"world": {"size": 24, "num_frames": 8}, "metric": "mine:Metric"}))
    assert own["metric"] == "mine:Metric" and own["data"]["_component_"] == "shapes"  # the folder's own key wins


def test_any_metric_by_name_for_any_model(tmp_path):
    _model(num_layers=3).save(tmp_path / "wan")
    with pytest.raises(ValueError, match="--metric NAME"):
        compute_importance(str(tmp_path / "wan"), out_dir=str(tmp_path / "a"), methods="metric", progress=False)
    res = compute_importance(str(tmp_path / "wan"), out_dir=str(tmp_path / "a"), methods="metric", progress=False,
                             metric="analyze_helpers:DepthMetric", metric_cases=3)
    doc = read_importance(res["files"]["importance_metric"], load_denoiser(tmp_path / "wan"))
    assert [r["rank"] for r in doc["blocks"]] == [2, 1, 0]  # later blocks drop the toy metric more
    assert doc["calib"]["metric"].startswith("toy depth metric (3 cases")


def test_cli_data_option_names_a_source(tmp_path, capsys):
    _model(num_layers=2, in_channels=3, text_dim=32).save(tmp_path / "wan")
    out = tmp_path / "an"
    data = "{_component_: shapes, size: 8, num_frames: 3, p_two_objects: 0}"  # one object: 8 px holds no two
    assert main(["analyze", str(tmp_path / "wan"), "--calib", "2", "--out", str(out), "--data", data]) == 0
    doc = json.loads((out / "importance.json").read_text())
    assert doc["calib"]["data"] == {"_component_": "shapes", "size": 8, "num_frames": 3, "p_two_objects": 0}
    assert doc["calib"]["stream"] == "calibration"
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "wan"), "--calib", "2", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data SOURCE" in err and not (tmp_path / "b").exists()
    x0, cond = wan_cond(2, ti2v=False)
    save_file({"x0": x0[:, :3].contiguous(), "text": torch.randn(2, 5, 32)}, str(tmp_path / "lat.safetensors"))
    assert main(["analyze", str(tmp_path / "wan"), "--calib", "2", "--out", str(tmp_path / "c"),
                 "--latents", str(tmp_path / "lat.safetensors")]) == 0
