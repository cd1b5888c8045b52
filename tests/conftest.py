import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_shapes_model(tmp_path_factory):
    """A 2-block Shapes-world Wan model (untrained), saved like the shipped teacher."""
    from fastlight.models.presets import SHAPES_TEACHER_CONFIG
    from fastlight.models.wan import WanDenoiser

    torch.manual_seed(0)
    cfg = dict(SHAPES_TEACHER_CONFIG, num_layers=2, attention_head_dim=8, ffn_dim=32, freq_dim=16)
    m = WanDenoiser.from_config(**cfg)
    path = tmp_path_factory.mktemp("models") / "tiny_shapes"
    m.save(path, {"kind": "shapes-teacher", "world": {"size": 24, "num_frames": 8}, "shift": 3.0})
    return path
