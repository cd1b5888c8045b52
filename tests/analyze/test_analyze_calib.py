import pytest
import torch
from safetensors.torch import save_file

from fastlight.analyze.calib import latent_calibration, load_latents, model_calibration, source_calibration
from fastlight.analyze.defaults import model_defaults
from fastlight.data.source import build_source
from fastlight.models.load import load_denoiser
from fastlight.models.wan import WanDenoiser, tiny_wan_config
from fastlight.shapes.analysis import shapes_calibration

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
    assert a.info["stream"] == "calibration" and a.info["data"]["_component_"] == "shapes"


def test_calibration_never_replays_a_training_batch(tiny_shapes_model):
    """Same seed, same source: the calibration stream is not the training stream."""
    model = load_denoiser(tiny_shapes_model)
    cal = model_calibration(model, num_samples=4, seed=0, batch_size=4)  # the data source the folder names
    spec = model_defaults(model)["data"]
    train = build_source(spec, seed=0, batch_size=4).batch(0)
    assert cal.batches[0].x0.shape == train["x0"].shape
    assert not torch.equal(cal.batches[0].x0, train["x0"])
    calib_source = build_source(spec, seed=0, batch_size=4, stream="calibration").batch(0)
    assert torch.equal(cal.batches[0].x0, calib_source["x0"])  # exactly the source's calibration batch 0
    assert torch.equal(cal.batches[0].cond.text, calib_source["text"])


def test_a_model_folder_can_name_its_own_calibration_data(tmp_path):
    """Generic: a fastlight.json `data` spec, no plug-in involved; without one a clear error says what to pass."""
    torch.manual_seed(0)
    WanDenoiser.from_config(**tiny_wan_config(in_channels=3, text_dim=32)).save(
        tmp_path / "m", {"data": {"_component_": "shapes", "size": 8, "num_frames": 3, "p_two_objects": 0}, "shift": 2.0})
    model = load_denoiser(tmp_path / "m")
    cal = model_calibration(model, num_samples=3, seed=1, batch_size=2)
    assert [b.x0.shape for b in cal] == [(2, 3, 3, 8, 8), (1, 3, 3, 8, 8)] and cal.info["shift"] == 2.0
    assert cal.batches[0].cond.image.shape == (2, 3, 1, 8, 8)
    WanDenoiser.from_config(**tiny_wan_config()).save(tmp_path / "plain")
    with pytest.raises(ValueError, match="names no calibration data .*--data SOURCE .*--latents FILE"):
        model_calibration(load_denoiser(tmp_path / "plain"), num_samples=2)
    spec = {"_component_": "shapes", "size": 8, "num_frames": 3, "p_two_objects": 0}
    assert torch.equal(source_calibration(spec, 2, seed=1, batch_size=2, shift=2.0).batches[0].eps, cal.batches[0].eps)


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
