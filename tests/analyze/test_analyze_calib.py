import pytest
import torch
from safetensors.torch import save_file

from fastlight.analyze.calib import latent_calibration, load_latents, shapes_calibration
from fastlight.models.load import load_denoiser

from analyze_helpers import wan_cond


def test_shapes_calibration_is_fixed_by_seed(tiny_shapes_model):
    model = load_denoiser(tiny_shapes_model)
    a = shapes_calibration(model, num_samples=5, seed=3, batch_size=3)
    b = shapes_calibration(model, num_samples=5, seed=3, batch_size=3)
    assert [x.x0.shape[0] for x in a] == [3, 2] and a.num_samples == 5
    x0, eps, s, cond = a.batches[0]
    assert x0.shape == (3, 3, 8, 24, 24) and x0.min() >= -1 and x0.max() <= 1
    assert torch.equal(cond.image, x0[:, :, :1]) and cond.text.shape[0] == 3
    assert ((s >= 0) & (s <= 1)).all() and a.info["shift"] == 3.0
    for p, q in zip(a, b):
        assert torch.equal(p.x0, q.x0) and torch.equal(p.eps, q.eps) and torch.equal(p.s, q.s)
        assert torch.equal(p.cond.text, q.cond.text)
    c = shapes_calibration(model, num_samples=5, seed=4, batch_size=3)
    assert not torch.equal(a.batches[0].eps, c.batches[0].eps)


def test_latent_calibration_cycles_latents_with_fresh_noise():
    x0, cond = wan_cond(3, ti2v=True)
    cal = latent_calibration(x0, cond, num_samples=7, seed=0, shift=3.0, batch_size=4)
    assert [b.x0.shape[0] for b in cal] == [4, 3]
    allx = torch.cat([b.x0 for b in cal])
    assert torch.equal(allx[3], x0[0]) and torch.equal(allx[6], x0[0])
    assert torch.equal(cal.batches[1].cond.image[2], cond.image[0])
    eps = torch.cat([b.eps for b in cal])
    assert not torch.equal(eps[0], eps[3])  # same latent, different noise


@pytest.mark.parametrize("n", [0, -2])
def test_empty_calibration_refused(n, tiny_shapes_model):
    x0, cond = wan_cond(3, ti2v=False)
    with pytest.raises(ValueError, match="calibration set is empty"):
        latent_calibration(x0, cond, num_samples=n)
    with pytest.raises(ValueError, match="calibration set is empty"):
        shapes_calibration(load_denoiser(tiny_shapes_model), num_samples=n)


def test_latent_calibration_checks_batch():
    x0, cond = wan_cond(3, ti2v=False)
    with pytest.raises(ValueError, match="cond has batch"):
        latent_calibration(x0[:2], cond, num_samples=2)


def test_load_latents(tmp_path):
    x0, cond = wan_cond(2, ti2v=True)
    f = tmp_path / "lat.safetensors"
    save_file({"x0": x0, "text": cond.text, "image": cond.image}, str(f))
    x, c = load_latents(f)
    assert torch.equal(x, x0) and torch.equal(c.image, cond.image) and c.extra is None
    save_file({"x0": x0}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="lacks"):
        load_latents(tmp_path / "bad.safetensors")
