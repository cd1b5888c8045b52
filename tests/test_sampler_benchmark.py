"""benchmarks/sampler_vs_diffusers.py runs end to end on a tiny config: both samplers are timed,
the ratio is reported and the two final latents agree. Timings themselves are not asserted."""
import json

import pytest

from tests.benchmark_scripts import load_benchmark

TINY = ["--steps", "2", "--repeats", "1", "--warmup", "0", "--layers", "2", "--heads", "2", "--head-dim", "8",
        "--text-dim", "16", "--text-len", "4", "--channels", "4", "--frames", "3", "--height", "8", "--width", "8",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("sampler_vs_diffusers")


def test_benchmark_runs_and_latents_agree(bench, tmp_path, capsys):
    out = tmp_path / "res.json"
    res = bench.main([*TINY, "--out", str(out)])
    for name in ("ours", "diffusers"):
        r = res[name]
        assert len(r["times_s"]) == 1 and r["median_s"] > 0
        assert r["min_s"] <= r["median_s"] <= r["max_s"]
    assert res["ratio"] > 0  # its value is a timing: not asserted
    assert res["max_abs_diff"] < 1e-4
    assert res["mean_abs_change_from_noise"] > 1e-2  # the samplers really moved the latents
    assert res["nfe_per_video"] == 4
    assert json.loads(out.read_text())["max_abs_diff"] == res["max_abs_diff"]
    assert not list(tmp_path.glob("*.tmp"))
    assert "ratio ours/diffusers" in capsys.readouterr().out


def test_bf16_is_refused_off_cuda(bench):
    with pytest.raises(SystemExit):
        bench.main([*TINY, "--dtype", "bfloat16"])
