"""Denoiser.forward_shared: several skip sets, the common block prefix evaluated once."""
import pytest
import torch

from fastlight.models.denoiser import Cond
from fastlight.models.hunyuan import HunyuanDenoiser, tiny_hunyuan_config
from fastlight.models.wan import WanDenoiser, tiny_wan_config


def _perturbed(den):
    with torch.no_grad():
        for p in den.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return den.eval()


def _wan():
    torch.manual_seed(0)
    den = _perturbed(WanDenoiser.from_config(**tiny_wan_config(num_layers=6)))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 4, 4, generator=g)
    cond = Cond(torch.randn(2, 5, 16, generator=g), torch.randn(2, 4, 1, 4, 4, generator=g))
    return den, x, cond


def _hunyuan():
    torch.manual_seed(0)
    cfg = tiny_hunyuan_config(num_layers=2, num_single_layers=3)
    den = _perturbed(HunyuanDenoiser.from_config(**cfg))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 3, 4, 4, generator=g)
    extra = {"pooled": torch.randn(2, cfg["pooled_projection_dim"], generator=g), "text_mask": torch.ones(2, 5)}
    return den, x, Cond(torch.randn(2, 5, cfg["text_embed_dim"], generator=g), extra=extra)


@pytest.mark.parametrize("build", [_wan, _hunyuan])
@pytest.mark.parametrize("skips", [[(2, 3), ()], [(), (4,)], [(1,), (1,)], [(0, 4), (4,), ()]])
def test_forward_shared_equals_separate_forwards(build, skips):
    den, x, cond = build()
    s = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        shared = den.forward_shared(x, s, cond, skips)
        alone = [den(x, s, cond, skip=k) for k in skips]
    assert len(shared) == len(skips)
    for a, b in zip(shared, alone):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_prefix_blocks_run_once():
    den, x, cond = _wan()
    calls = [0] * den.num_blocks
    for i, blk in enumerate(den.model.blocks):
        blk.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    skips = [(3, 4), ()]
    assert den.shared_prefix_blocks(skips) == 3
    with torch.no_grad():
        den.forward_shared(x, torch.tensor(0.5), cond, skips)
    assert calls == [1, 1, 1, 1, 1, 2]  # 0-2 shared; 3, 4 only unpruned; 5 in both branches


def test_forward_shared_bad_skip():
    den, x, cond = _wan()
    with pytest.raises(ValueError, match="out of range"):
        den.forward_shared(x, torch.tensor(0.5), cond, [(9,), ()])
