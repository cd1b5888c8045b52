"""Fixtures for training from `fastlight preprocess` shards: a few generated MP4s, a tiny Wan VAE, text
embeddings, the shards, and a tiny NON-Shapes Wan (4 latent channels, text_dim 6) with a depth plan."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

# tiny Wan VAE: 1 spatial downsample (x2), 1 temporal downsample (x2) -> 9 frames give 5 latent frames
VAE_CFG = dict(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
               latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.0, 2.0, 0.5, 1.5])
TEXT_DIM = 6


def _clip(seed, f, h, w):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(1, h, w, 3))
    return np.clip(base + np.arange(f)[:, None, None, None] * 8, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def shard_world(tmp_path_factory):
    """{shards, model, plan}: 6 videos in two buckets (4 of 16x16, 2 of 16x32 -> latents (4, 5, 8, 8)
    and (4, 5, 8, 16)), captions as (L, 6) embeddings, and a perturbed 4-block Wan dropping block 2."""
    from diffusers import AutoencoderKLWan

    from fastlight.analyze.plans import depth_plan, write_plan
    from fastlight.data.latents import preprocess
    from fastlight.data.video import write_video
    from fastlight.models.load import load_denoiser
    from fastlight.models.wan import WanDenoiser, tiny_wan_config

    root = tmp_path_factory.mktemp("shard_world")
    sizes = [(32, 32)] * 4 + [(32, 64)] * 2
    caps, emb = [], {}
    g = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate(sizes):
        write_video(root / "videos" / f"v{i}.mp4", _clip(i, 9, h, w))
        caps.append({"video": f"v{i}.mp4", "caption": f"clip {i}"})
        emb[f"v{i}"] = torch.randn(3 + i % 3, TEXT_DIM, generator=g)
    (root / "captions.jsonl").write_text("\n".join(json.dumps(c) for c in caps) + "\n")
    save_file(emb, str(root / "text.safetensors"))
    torch.manual_seed(0)
    AutoencoderKLWan(**VAE_CFG).save_pretrained(root / "vae")
    preprocess(root / "videos", root / "captions.jsonl", root / "vae", root / "shards", num_frames=9,
               buckets=[(16, 16), (16, 32)], text_embeds=root / "text.safetensors", shard_size=2, progress=False)

    torch.manual_seed(0)
    den = WanDenoiser.from_config(**tiny_wan_config(num_layers=4, in_channels=4, text_dim=TEXT_DIM))
    with torch.no_grad():
        for p in den.model.blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    den.save(root / "wan", {"kind": "test-wan"})
    rows = [{"index": i, "score": sc} for i, sc in enumerate([1.0, 0.9, 0.1, 1.0])]
    plan = depth_plan(rows, load_denoiser(root / "wan"), 0.05, keep_ends=True, verbose=False)
    assert plan["drop_blocks"] == [2]
    return {"shards": root / "shards", "model": root / "wan", "plan": write_plan(root / "plan.json", plan)}
