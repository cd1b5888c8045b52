"""The shipped embedded teacher: loads with the stock class, has its manifest, follows prompts."""
import json

import torch

from fastlight.shapes import world as shapes
from fastlight.shapes.teacher_eval import score_videos
from fastlight.models.load import load_denoiser
from fastlight.shapes.preset import SHIPPED_DIR
from fastlight.models.load import resolve_model_path
from fastlight.diffusion.spec import SamplerSpec, override
from fastlight.shapes.generate import generate, world_of
from fastlight.shapes.pretrain import PretrainConfig, probe, probe_set


def test_shipped_teacher_files_and_manifest():
    files = {p.name: p.stat().st_size for p in SHIPPED_DIR.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "fastlight.json"} <= set(files)
    assert sum(files.values()) < 30 * 2**20
    meta = json.loads((SHIPPED_DIR / "fastlight.json").read_text())
    for key in ("train_config", "model_config", "steps", "wall_time_s", "loss_curve", "world", "shift", "quality"):
        assert key in meta, key
    assert meta["loss_curve"][-1][1] < meta["loss_curve"][0][1] / 5
    from diffusers import WanTransformer3DModel

    assert isinstance(WanTransformer3DModel.from_pretrained(SHIPPED_DIR), WanTransformer3DModel)


def test_shipped_teacher_has_its_own_sampler():
    """What the README's figures use: 50 Euler steps, guidance 4, shift 3 (the shift it was trained with)."""
    spec = SamplerSpec.load(SHIPPED_DIR)
    assert spec == SamplerSpec.euler(50, 4.0, 3.0)
    assert spec.shift == json.loads((SHIPPED_DIR / "fastlight.json").read_text())["shift"]


def test_shipped_teacher_shape():
    m = load_denoiser(resolve_model_path("shapes-teacher"))
    assert m.num_blocks == 16 and 1.0e6 < m.num_params() < 1.3e6


def test_shipped_teacher_uses_the_text():
    m = load_denoiser(resolve_model_path("shapes-teacher")).eval()
    res = probe(m, probe_set(PretrainConfig()))
    # swapping the direction word moves x0_hat about as much as the ideal clips differ (~0.097)
    assert res["prompt_sensitivity"] > 0.05


def test_shipped_teacher_follows_prompts_quick():
    """A fast regression check (8 held-out cases, 20 steps); the README's full bar uses 64 x 50."""
    m = load_denoiser(resolve_model_path("shapes-teacher")).eval()
    world = world_of(m)
    clips = shapes.sample_clips(20_000, 8, world)
    first = shapes.render_batch(clips, world)[:, :, 0]
    spec = override(SamplerSpec.load(SHIPPED_DIR), num_steps=20)  # its own sampler, fewer steps
    vids = generate(m, [c.prompt for c in clips], first, spec, seed=0)
    res = score_videos(vids, clips, world)
    assert res["direction_acc"] >= 0.75 and res["colour_kept_frames"] >= 0.85, res
    assert torch.isfinite(vids).all()


def test_oracle_fails_the_issues_wrap_around_clip():
    """Issue 16's clip (`fastlight sample --model shapes-teacher --prompt "a red circle moving left
    quickly" --seed 2000`): the circle moves left, as prompted (the centroid path says so), and part of
    it re-appears at the right border in the last frames; the oracle now fails it. This pins the
    shipped teacher's known defect: a retrained teacher that no longer wraps must flip this test."""
    from fastlight.shapes.generate import shapes_spec

    m = load_denoiser(resolve_model_path("shapes-teacher")).eval()
    world = world_of(m)
    prompt = "a red circle moving left quickly"
    spec = shapes_spec(prompt, world, 2000)
    video = generate(m, [prompt], spec.image[None], SamplerSpec.load(SHIPPED_DIR), 2000)[0]
    res = shapes.check_clip(video, spec.clip, world)
    obj = res["objects"][0]
    assert obj["direction_ok"] and res["ghost"] and not obj["ok"]
    assert max(obj["ghost_px"][-2:]) >= 10  # the copy at the right border in frames 6-7
