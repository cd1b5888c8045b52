"""`fastlight export --format onnx`: the transformer in onnxruntime matches torch (T2V, TI2V, batch
1 and 3), and `fastlight sample --backend onnx` gives the torch video."""
import json

import pytest
import torch

from fastlight.cli import main
from fastlight.shapes import text
from fastlight.export.to_onnx import OnnxDenoiser
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from fastlight.diffusion.spec import SamplerSpec
from fastlight.shapes.generate import generate
from fastlight.sample import load_model
from tests.benchmark_scripts import load_benchmark

pytest.importorskip("onnxruntime")

PROMPT = "a red circle moving left quickly"
SHAPE = (3, 8, 24, 24)


@pytest.fixture(scope="module")
def onnx_dir(student, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "student_onnx"
    assert main(["export", str(student), "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_layout_and_recorded_difference(onnx_dir):
    info = json.loads((onnx_dir / "onnx.json").read_text())
    assert info["opset"] == 18 and info["inputs"]["x"] == ["batch", *SHAPE]
    assert info["inputs"]["timestep"] == ["batch", 8 * 6 * 6] and info["inputs"]["text"] == ["batch", 2, 32]
    assert info["max_abs_diff_vs_torch"] < 1e-4
    for name in ("transformer.onnx", "config.json", "fastlight.json", "null_text.safetensors", "sampler.json"):
        assert (onnx_dir / name).is_file()
    assert not (onnx_dir / "diffusion_pytorch_model.safetensors").exists()  # the on-device folder needs no torch weights


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("ti2v", [False, True])
def test_onnx_denoiser_equals_torch(onnx_dir, student, batch, ti2v):
    den, ox = load_denoiser(student / "model"), OnnxDenoiser.from_folder(onnx_dir)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, *SHAPE, generator=g)
    image = torch.rand(batch, 3, 1, 24, 24, generator=g) * 2 - 1 if ti2v else None
    cond = Cond(text.encode([PROMPT] * batch), image)
    s = torch.rand(batch, generator=g)
    with torch.no_grad():
        ref = den(x, s, cond)
    out = ox(x, s, cond)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    if ti2v:
        assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))


def test_samplers_run_on_onnx(onnx_dir, student):
    """Few-step (TI2V, as `fastlight sample` runs it) and Euler with CFG (batched cond+uncond, batch 2)."""
    den, ox = load_model(str(student / "model")), load_model(str(onnx_dir), backend="onnx")
    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    few, euler = SamplerSpec.few_step(), SamplerSpec.euler(2, guidance=4.0)
    a = generate(ox, [PROMPT], image, few, seed=3)
    b = generate(den, [PROMPT], image, few, seed=3)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    a = generate(ox, [PROMPT], image, euler, seed=1)
    b = generate(den, [PROMPT], image, euler, seed=1)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_sample_backend_onnx(onnx_dir, tmp_path, capsys):
    assert main(["sample", "--model", str(onnx_dir), "--backend", "onnx", "--prompt", PROMPT,
                 "--out", str(tmp_path / "clip.mp4")]) == 0
    assert (tmp_path / "clip.mp4").stat().st_size > 0 and (tmp_path / "clip.gif").stat().st_size > 0
    assert "4 few-step steps at timesteps 1000/750/500/250" in capsys.readouterr().out


def test_onnx_denoiser_refuses_skip_and_wrong_shapes(onnx_dir):
    ox = OnnxDenoiser.from_folder(onnx_dir)
    x, cond = torch.randn(1, *SHAPE), Cond(text.encode([PROMPT]))
    with pytest.raises(ValueError, match="cannot skip"):
        ox(x, torch.ones(1), cond, skip={0})
    with pytest.raises(ValueError, match="exported for"):
        ox(torch.randn(1, 3, 8, 16, 16), torch.ones(1), cond)


def test_onnx_vs_torch_benchmark_runs(onnx_dir, student, tmp_path, capsys):
    """benchmarks/onnx_vs_torch.py end to end on the tiny student (timings not asserted)."""
    mod = load_benchmark("onnx_vs_torch")
    res = mod.main(["--model", str(student / "model"), "--onnx", str(onnx_dir), "--repeats", "1", "--warmup", "0",
                    "--out", str(tmp_path / "r.json")])
    assert res["settings"]["nfe_per_video"] == 4 and res["ratio"] > 0
    assert res["max_abs_diff_forward"] < 1e-4 and res["max_abs_diff_video"] < 1e-4
    assert json.loads((tmp_path / "r.json").read_text())["ratio"] == res["ratio"]
    assert "ratio onnx/torch" in capsys.readouterr().out
