"""The tiny offline pipelines (fastlight/models/tiny_pipelines.py): complete folders that the stock
diffusers classes load and generate from, that `load_denoiser` loads, and that our sampler runs on
(and agrees with the stock pipeline's Euler flow sampler on)."""
import json

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, WanImageToVideoPipeline, WanPipeline
from transformers import AutoTokenizer

from fastlight.diffusion.sampling import euler_sample, sample
from fastlight.diffusion.spec import SamplerSpec
from fastlight.errors import InputError
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser
from fastlight.models.tiny_pipelines import KINDS, build_tiny_pipeline

# kind -> (stock class, latent channels, spatial factor, tokenizer folders)
EXPECT = {
    "wan21-t2v": (WanPipeline, 16, 8, ("tokenizer",)),
    "wan22-ti2v": (WanPipeline, 48, 16, ("tokenizer",)),
    "hunyuan-t2v": (HunyuanVideoPipeline, 16, 8, ("tokenizer", "tokenizer_2")),
}
FRAMES = 5  # -> 2 latent frames
PROMPT = "a red circle moves left quickly"


def load(folder, cls):
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("kind", KINDS)
def test_folder_is_a_complete_safetensors_pipeline(tiny_pipeline, kind):
    folder = tiny_pipeline(kind)
    index = json.loads((folder / "model_index.json").read_text())
    cls, channels, _, tokenizers = EXPECT[kind]
    assert index["_class_name"] == cls.__name__
    parts = {k: v for k, v in index.items() if isinstance(v, list) and v[0] is not None}
    assert all((folder / name).is_dir() for name in parts)
    assert not list(folder.rglob("*.bin")) and len(list(folder.rglob("*.safetensors"))) >= 3
    assert json.loads((folder / "transformer" / "config.json").read_text())["in_channels"] == channels
    if kind == "wan22-ti2v":
        assert index["expand_timesteps"] is True
        vae = json.loads((folder / "vae" / "config.json").read_text())
        assert (vae["z_dim"], vae["patch_size"], vae["is_residual"], vae["scale_factor_spatial"]) == (48, 2, True, 16)
    for name in tokenizers:
        tok = AutoTokenizer.from_pretrained(folder / name)
        ids = tok(["ünïcode prompt 🙂", PROMPT], padding="max_length", max_length=64, truncation=True).input_ids
        assert [len(i) for i in ids] == [64, 64] and ids[0] != ids[1]
        assert tok.decode(ids[0], skip_special_tokens=True) == "ünïcode prompt 🙂"  # byte-level: no unknown tokens


def test_build_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = build_tiny_pipeline("wan21-t2v", seed=0), build_tiny_pipeline("wan21-t2v", seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb = a.transformer.state_dict(), b.transformer.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = build_tiny_pipeline("wan21-t2v", seed=1)
    assert not torch.equal(c.transformer.proj_out.weight, a.transformer.proj_out.weight)
    with pytest.raises(InputError, match="unknown tiny pipeline kind"):
        build_tiny_pipeline("wan99")


@pytest.mark.parametrize("kind", KINDS)
def test_stock_pipeline_loads_and_generates(tiny_pipeline, kind):
    cls, channels, spatial, _ = EXPECT[kind]
    pipe = load(tiny_pipeline(kind), cls)
    size = 2 * spatial  # 2x2 latents: one 2x2 patch per frame
    kw = dict(prompt=PROMPT, num_inference_steps=2, height=size, width=size, num_frames=FRAMES,
              max_sequence_length=32)  # Wan's default 512 text tokens: slow for no gain here
    lat = pipe(**kw, output_type="latent", generator=torch.Generator().manual_seed(0)).frames
    assert lat.shape == (1, channels, 2, 2, 2) and torch.isfinite(lat).all() and lat.abs().mean() > 0.1
    video = pipe(**kw, output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert video.shape == (1, FRAMES, size, size, 3) and np.isfinite(video).all() and video.std() > 0


def test_hunyuan_prompt_template_crop_never_reaches_the_prompt(tiny_pipeline):
    """The default template crops its first 95 tokens: the tiny Llama tokenizer spells the system part
    in more, so the prompt's own tokens stay in the embedding."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(tiny_pipeline("hunyuan-t2v") / "tokenizer")
    system = DEFAULT_PROMPT_TEMPLATE["template"].split("{}")[0]
    assert len(tok(system).input_ids) > DEFAULT_PROMPT_TEMPLATE["crop_start"]
    assert tok.convert_tokens_to_ids("<|eot_id|>") in tok(system).input_ids  # header tokens are single tokens


def test_ti2v_image_to_video_keeps_the_first_latent_frame(tiny_pipeline):
    """Wan 2.2 TI2V: WanImageToVideoPipeline on the same folder keeps the image's latent as frame 0.
    (Embeddings passed in: diffusers 0.42's I2V prompt cleaning needs ftfy, which is not installed.)"""
    folder = tiny_pipeline("wan22-ti2v")
    emb = load(folder, WanPipeline).encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=32)[0]
    pipe = load(folder, WanImageToVideoPipeline)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = (pipe(image=image, prompt_embeds=emb, guidance_scale=1.0, num_inference_steps=2, height=32, width=32,
                 num_frames=FRAMES, output_type="latent", generator=torch.Generator().manual_seed(s)).frames
            for s in (0, 1))
    assert torch.equal(a[:, :, :1], b[:, :, :1]) and not torch.equal(a[:, :, 1:], b[:, :, 1:])


def _wan_cond(pipe, den):
    """Our Cond and null text from the stock pipeline's own prompt encoding (negative prompt "")."""
    emb, neg = pipe.encode_prompt(PROMPT, negative_prompt="", max_sequence_length=32)
    den.null_text = neg[:, :1].float()  # "" -> one </s> token; the pipeline zero-pads it, so does null_cond
    return Cond(emb.float())


@pytest.mark.parametrize("kind", ["wan21-t2v", "wan22-ti2v"])
def test_our_sampler_on_a_tiny_wan_equals_the_stock_euler_pipeline(tiny_pipeline, kind):
    cls, channels, spatial, _ = EXPECT[kind]
    folder = tiny_pipeline(kind)
    den = load_denoiser(folder)
    assert den.family == "wan" and den.model.config.in_channels == channels
    pipe = load(folder, cls)
    cond = _wan_cond(pipe, den)
    noise = torch.randn(1, channels, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    spec = SamplerSpec.euler(num_steps=2, guidance=4.0, shift=3.0)
    ours = sample(den, noise, cond, spec)
    assert ours.shape == noise.shape and torch.isfinite(ours).all() and (ours - noise).abs().mean() > 0.1
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    emb, neg = pipe.encode_prompt(PROMPT, negative_prompt="", max_sequence_length=32)
    ref = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, latents=noise.clone(), num_inference_steps=2,
               guidance_scale=4.0, height=2 * spatial, width=2 * spatial, num_frames=FRAMES,
               output_type="latent").frames
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # every block acts (perturbed weights): skipping one changes the velocity
    s = torch.full((1,), 0.5)
    assert (den(noise, s, cond) - den(noise, s, cond, skip={1})).abs().max() > 1e-3


def test_our_sampler_on_the_tiny_hunyuan_equals_the_stock_pipeline(tiny_pipeline):
    folder = tiny_pipeline("hunyuan-t2v")
    den = load_denoiser(folder)
    assert den.family == "hunyuan" and den.num_blocks == 4
    pipe = load(folder, HunyuanVideoPipeline)
    emb, pooled, mask = pipe.encode_prompt(PROMPT, prompt_2=None, max_sequence_length=16)
    cond = Cond(emb.float(), extra={"pooled": pooled.float(), "text_mask": mask.float()})
    noise = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    # HunyuanVideoPipeline passes sigmas = linspace(1, 0, N + 1)[:-1] (shifted by the scheduler), not
    # the scheduler's own N-step grid that SamplerSpec.euler's levels (shifted_grid) reproduce
    s = torch.linspace(1, 0, 3)
    levels = 7.0 * s / (1 + 6.0 * s)
    ours = euler_sample(den, noise, cond, levels)  # guidance-distilled: the embedded guidance 6, one forward
    assert torch.isfinite(ours).all() and (ours - noise).abs().mean() > 0.1
    ref = pipe(prompt_embeds=emb, pooled_prompt_embeds=pooled, prompt_attention_mask=mask, latents=noise.clone(),
               num_inference_steps=2, guidance_scale=6.0, height=16, width=16, num_frames=FRAMES,
               output_type="latent").frames
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_script_writes_the_chosen_kinds(tmp_path):
    import runpy
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "make_tiny_pipelines.py"
    main = runpy.run_path(str(script), run_name="make_tiny_pipelines")["main"]
    assert main([str(tmp_path), "--kinds", "wan21-t2v"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wan21-t2v"]
    assert load_denoiser(tmp_path / "wan21-t2v").model.config.in_channels == 16
