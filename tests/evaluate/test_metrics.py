"""fastlight.evaluate.metrics: the one PSNR and the one Pareto front."""
import math

import pytest
import torch

from fastlight.evaluate.metrics import PSNR_CAP_DB, pareto_front, psnr_db


def test_psnr_db_formula_range_and_cap():
    ref = torch.zeros(3, 4, 8, 8)
    x = ref + 0.1  # MSE 0.01
    assert psnr_db(x, ref) == pytest.approx(10 * math.log10(4 / 0.01))  # [-1, 1]: peak-to-peak 2
    assert psnr_db(x, ref, data_range=1.0) == pytest.approx(20.0)
    assert psnr_db(ref, ref) == PSNR_CAP_DB
    assert psnr_db(ref + 1e-9, ref, data_range=1.0) == PSNR_CAP_DB  # 180 dB, capped
    assert psnr_db(x.double(), ref.half()) == pytest.approx(psnr_db(x, ref), rel=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_db(x, ref[:, :2])


def test_pareto_front_maximize_and_minimize_x():
    speed_score = [(1.0, 0.8), (10.0, 0.78), (10.0, 0.5), (5.0, 0.6), (40.0, 0.7)]
    assert pareto_front(speed_score) == [0, 1, 4]  # by increasing speedup
    cost_quality = [(10, 0.5), (20, 0.4), (20, 0.7), (40, 0.7), (50, 0.9)]
    assert pareto_front(cost_quality, maximize_x=False) == [0, 2, 4]  # (40, 0.7) costs more for the same
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0]
    assert pareto_front([]) == []
