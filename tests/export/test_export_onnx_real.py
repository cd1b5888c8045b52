"""`fastlight export --format onnx` of real-family students (depth-pruned few-step students of the tiny
Wan 2.1, Wan 2.2 TI2V and HunyuanVideo pipelines): onnxruntime equals torch for one forward (batch 1
and 2, TI2V for Wan 2.2, a shorter prompt's text mask for HunyuanVideo) and through the student's own
few-step sampler."""
import json

import pytest
import torch

from fastlight.cli import main
from fastlight.diffusion.sampling import sample
from fastlight.diffusion.spec import SamplerSpec
from fastlight.export.to_onnx import OnnxDenoiser
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow  # three dynamo exports, ~30 s of CPU each

LATENT = (2, 4, 4)  # latent frames, height, width: 2 x 2 x 2 patches
TEXT_LEN = 6
TOL = 1e-4
KINDS = ["wan21-t2v", "wan22-ti2v", "hunyuan-t2v"]


@pytest.fixture(scope="module", params=KINDS)
def exported(request, real_student, tmp_path_factory):
    """(kind, student model folder, ONNX folder)."""
    kind = request.param
    run = real_student(kind)
    out = tmp_path_factory.mktemp("onnx") / kind
    f, h, w = LATENT
    assert main(["export", str(run), "--format", "onnx", "--out", str(out), "--frames", str(f), "--height", str(h),
                 "--width", str(w), "--text-len", str(TEXT_LEN)]) == 0
    return kind, run / "model", out


def cond_for(den, batch, g, image=False):
    """Random conditioning of the exported sizes; HunyuanVideo: sample 0's prompt is shorter (mask)."""
    cfg = den.model.config
    if den.family == "wan":
        text = torch.randn(batch, TEXT_LEN, cfg.text_dim, generator=g)
        first = torch.randn(batch, cfg.in_channels, 1, *LATENT[1:], generator=g) if image else None
        return Cond(text, image=first)
    mask = torch.ones(batch, TEXT_LEN)
    mask[0, 2:] = 0.0
    return Cond(torch.randn(batch, TEXT_LEN, cfg.text_embed_dim, generator=g),
                extra={"pooled": torch.randn(batch, cfg.pooled_projection_dim, generator=g), "text_mask": mask})


def test_onnx_equals_torch_for_each_family(exported):
    kind, model_dir, out = exported
    info = json.loads((out / "onnx.json").read_text())
    den, ox = load_denoiser(model_dir).eval(), OnnxDenoiser.from_folder(out)
    family = "hunyuan" if kind.startswith("hunyuan") else "wan"
    assert info["family"] == family and ox.family == f"{family}-onnx" and info["max_abs_diff_vs_torch"] < TOL
    assert info["inputs"]["x"] == ["batch", den.model.config.in_channels, *LATENT]
    if family == "hunyuan":
        assert sorted(info["inputs"]) == ["guidance", "pooled", "text", "text_mask", "timestep", "x"]
    g = torch.Generator().manual_seed(0)
    for batch, image in [(1, False), (2, False)] + ([(2, True)] if kind == "wan22-ti2v" else []):
        x = torch.randn(batch, den.model.config.in_channels, *LATENT, generator=g)
        s = torch.rand(batch, generator=g)
        cond = cond_for(den, batch, g, image)
        with torch.no_grad():
            ref = den(x, s, cond)
        assert ref.abs().max() > 0.1
        torch.testing.assert_close(ox(x, s, cond), ref, atol=TOL, rtol=0)
    # the student's own few-step sampler on both backends, same noise and re-noising stream
    spec = SamplerSpec.load(out)
    assert spec == SamplerSpec.few_step((1000, 750, 500, 250))
    noise = torch.randn(2, den.model.config.in_channels, *LATENT, generator=g)
    cond = cond_for(den, 2, g, image=kind == "wan22-ti2v")
    a = sample(ox, noise, cond, spec, generator=torch.Generator().manual_seed(5))
    b = sample(den, noise, cond, spec, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=TOL, rtol=0)
    # guided (CFG 3: cond and null cond batched) through the ONNX graph's dynamic batch
    euler = SamplerSpec.euler(2, guidance=3.0, shift=3.0)
    torch.testing.assert_close(sample(ox, noise, cond, euler), sample(den, noise, cond, euler), atol=TOL, rtol=0)
