import pytest
import yaml

from fastlight.config import ConfigError, load_config, save_config
from fastlight.shapes.pretrain import PretrainConfig


def test_shipped_recipe_loads_and_overrides(tmp_path):
    cfg = load_config(PretrainConfig, "configs/shapes/pretrain.yaml", ["steps=12", "lr=2e-4", "out=" + str(tmp_path)])
    assert cfg.steps == 12 and cfg.lr == pytest.approx(2e-4) and cfg.num_layers == 16
    saved = save_config(cfg, tmp_path)
    assert yaml.safe_load(saved.read_text())["steps"] == 12


def test_recipe_opens_with_its_command():
    first = open("configs/shapes/pretrain.yaml").readline()
    assert first.startswith("# fastlight pretrain configs/shapes/pretrain.yaml")


@pytest.mark.parametrize(
    "override,needle",
    [("stepz=3", "unknown key"), ("steps=abc", "must be a int"), ("lr=[1]", "must be a float"), ("oops", "key=value")],
)
def test_bad_overrides(override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(PretrainConfig, None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(PretrainConfig, tmp_path / "x.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("steps: 3\nwarmup: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['warmup'\]"):
        load_config(PretrainConfig, p)
