"""FVD (StyleGAN-V protocol) and the Gaussian Frechet distance, on CPU with a fake I3D."""
import numpy as np
import pytest
import torch
from torch import nn

from fastlight.evaluate import fvd as fvd_mod
from fastlight.evaluate.fvd import feature_stats, frechet_distance, frechet_distance_features


# ---- Frechet distance against closed forms ---------------------------------------------------
def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    s = a @ a.T + np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-8, abs=1e-8)


def test_diagonal_covariances():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    want = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + ((mu1 - mu2) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)


def test_one_dimensional_gaussians():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_general_covariances_match_symmetric_form():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    r1 = np.real(sqrtm(s1))
    want = np.trace(s1 + s2 - 2 * np.real(sqrtm(r1 @ s2 @ r1)))  # tr (S1^1/2 S2 S1^1/2)^1/2
    assert frechet_distance(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(want, rel=1e-8)


def test_set_with_itself_is_zero_and_stats_are_float64():
    f = np.random.default_rng(2).normal(size=(50, 6)).astype(np.float32)
    mu, sigma = feature_stats(f)
    assert mu.dtype == np.float64 and sigma.shape == (6, 6)
    assert frechet_distance_features(f, f) == pytest.approx(0.0, abs=1e-8)
    # fewer samples than dimensions: singular covariances still give ~0
    g = f[:4]
    assert frechet_distance_features(g, g) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance_features(f, f + 1.0) == pytest.approx(6.0, rel=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError, match="shapes do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(np.zeros((1, 3)))


# ---- FVD pipeline with a fake TorchScript I3D ---------------------------------------------------
class FakeI3D(nn.Module):
    """Stands in for StyleGAN-V's i3d_torchscript.pt: same call signature, small features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(3 * 2 * 2 * 2 + 3, 8)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        if rescale or resize or not return_features:
            raise RuntimeError("expected rescale=False, resize=False, return_features=True")
        if x.shape[2] != 16 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected (B, 3, 16, 224, 224)")
        if bool(x.min() < -1.0001) or bool(x.max() > 1.0001):
            raise RuntimeError("expected inputs in [-1, 1]")
        pooled = nn.functional.adaptive_avg_pool3d(x, (2, 2, 2)).flatten(1)  # (B, 24)
        motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3, 4))  # (B, 3)
        return self.proj(torch.cat([pooled, motion], dim=1))


@pytest.fixture(scope="module")
def fake_i3d(tmp_path_factory):
    import warnings

    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # torch.jit is marked deprecated in recent torch
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(FakeI3D().eval()), str(path))
    return path


def _videos(n, seed, frames=8, size=24):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, frames, size, size, generator=g) * 2 - 1


def test_preprocess_pads_resizes_and_scales():
    v = _videos(2, 0, frames=8)
    x = fvd_mod.preprocess(v)
    assert x.shape == (2, 3, 16, 224, 224) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[:, :, 8:], x[:, :, 7:8].expand(-1, -1, 8, -1, -1))  # last frame repeated
    long = _videos(1, 1, frames=20)
    assert torch.equal(fvd_mod.preprocess(long), fvd_mod.preprocess(long[:, :, :16]))  # first 16 frames
    # uint8 (F, H, W, 3) frames give the same clip as the float layout
    u8 = [((v[i].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy() for i in range(2)]
    back = torch.stack([torch.from_numpy(a).permute(3, 0, 1, 2).float() / 127.5 - 1 for a in u8])
    assert torch.allclose(fvd_mod.preprocess(u8), fvd_mod.preprocess(back), atol=1e-5)
    # non-square: shorter side to 224, centre crop
    assert fvd_mod.preprocess(torch.zeros(1, 3, 4, 24, 48)).shape == (1, 3, 16, 224, 224)


def test_fvd_end_to_end(fake_i3d):
    a, b = _videos(6, 0), _videos(6, 1)
    same = fvd_mod.fvd(a, a, fake_i3d, batch_size=4)
    assert same == pytest.approx(0.0, abs=1e-6)
    # a different distribution (darker, static) is far away
    c = (a * 0.3 - 0.5)[:, :, :1].expand_as(a).contiguous()
    near, far = fvd_mod.fvd(a, b, fake_i3d), fvd_mod.fvd(a, c, fake_i3d)
    assert far > 5 * near > 0
    # deterministic, independent of the batch size
    assert fvd_mod.fvd(a, b, fake_i3d, batch_size=2) == pytest.approx(fvd_mod.fvd(a, b, fake_i3d, batch_size=16), rel=1e-6)


def test_missing_detector_says_what_to_supply(tmp_path):
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt") as e:
        fvd_mod.load_i3d(tmp_path / "nope.pt")
    assert "stylegan-v" in str(e.value).lower()


def test_not_torchscript_is_one_line_value_error(tmp_path):
    p = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, p)
    with pytest.raises(ValueError, match="not a TorchScript file") as e:
        fvd_mod.load_i3d(p)
    assert "\n" not in str(e.value)
    q = tmp_path / "junk.pt"
    q.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        fvd_mod.fvd(_videos(2, 0), _videos(2, 1), q)
