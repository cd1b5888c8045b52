import pytest
import torch

from analyze_helpers import IDENTITY, make_identity, wan_cond
from fastlight.analyze.calib import latent_calibration
from fastlight.models.denoiser import Cond
from fastlight.models.hunyuan import HunyuanDenoiser, tiny_hunyuan_config
from fastlight.models.wan import WanDenoiser, tiny_wan_config


@pytest.fixture
def wan():
    torch.manual_seed(0)
    return WanDenoiser.from_config(**tiny_wan_config(num_layers=4)).eval()


@pytest.fixture
def wan_identity(wan):
    make_identity(wan, IDENTITY)
    return wan


@pytest.fixture
def wan_calib():
    x0, cond = wan_cond(6, ti2v=True)
    return latent_calibration(x0, cond, num_samples=8, seed=0, shift=3.0, batch_size=4)


@pytest.fixture
def hunyuan():
    torch.manual_seed(0)
    return HunyuanDenoiser.from_config(**tiny_hunyuan_config()).eval()


@pytest.fixture
def hunyuan_calib():
    g = torch.Generator().manual_seed(2)
    n = 4
    x0 = torch.randn(n, 4, 3, 4, 6, generator=g)
    mask = torch.ones(n, 5)
    mask[0, 3:] = 0
    cond = Cond(torch.randn(n, 5, 12, generator=g), extra={"pooled": torch.randn(n, 8, generator=g), "text_mask": mask})
    return latent_calibration(x0, cond, num_samples=4, seed=0, shift=3.0, batch_size=2)
