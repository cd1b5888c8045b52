"""`fastlight export --format diffusers`: the folder loads with the stock WanPipeline /
WanImageToVideoPipeline `from_pretrained` and reproduces our samplers' latents for the same noise."""
import json
import os

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanPipeline

from fastlight.cli import main
from fastlight.shapes import text
from fastlight.diffusion.sampling import euler_sample, few_step_grid, few_step_sample, shifted_grid
from fastlight.diffusion.spec import SamplerSpec
from fastlight.export.to_diffusers import pipeline_levels, scheduler_for
from fastlight.models.denoiser import Cond, ModelError
from fastlight.models.load import load_denoiser
from fastlight.models.wan import WanDenoiser, tiny_wan_config

PROMPTS = ["a red circle moving left quickly", "a blue square staying still and a green triangle moving up slowly"]
SHAPE = (3, 8, 24, 24)  # the Shapes world in pixel space


def write_sampler(model_dir, timesteps=(1000, 750, 500, 250)):
    SamplerSpec.few_step(timesteps, guidance=1.0).save(model_dir)  # what DmdRecipe.save_output writes
    return few_step_grid(timesteps)


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "student_diffusers"
    assert main(["export", str(student), "--format", "diffusers", "--out", str(out)]) == 0
    return out


def load_pipe(path, cls=WanPipeline, **none):
    pipe = cls.from_pretrained(path, **{k: None for k in none or ("vae", "text_encoder", "tokenizer")})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_layout_and_config(exported, student):
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["vae"] == [None, None]
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    cfg = json.loads((exported / "transformer" / "config.json").read_text())
    assert cfg["num_layers"] == 2 and cfg["in_channels"] == 3
    sched = json.loads((exported / "scheduler" / "scheduler_config.json").read_text())
    assert sched["stochastic_sampling"] is True and sched["shift"] == 1.0 and sched["shift_terminal"] == 0.25
    info = json.loads((exported / "fastlight_export.json").read_text())
    assert info["call"] == {**info["call"], "num_inference_steps": 4, "guidance_scale": 1.0}
    assert info["latent_shape"] == list(SHAPE)
    for name in ("fastlight.json", "null_text.safetensors", "sampler.json"):
        assert (exported / "transformer" / name).is_file()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_stock_pipeline_equals_our_few_step_sampler(exported, student):
    """The README's 5 lines: torch.manual_seed(seed) then the pipeline draws the latents and every
    re-noising eps from the global RNG; our sampler with one generator seeded `seed` does the same."""
    pipe = load_pipe(exported)
    assert pipe.vae is None and pipe.scheduler.config.stochastic_sampling
    emb = text.encode(PROMPTS)
    torch.manual_seed(5)
    ref = pipe(prompt_embeds=emb, latents=torch.randn(2, *SHAPE), num_inference_steps=4, guidance_scale=1.0,
               output_type="latent").frames
    den = load_denoiser(student / "model")
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(2, *SHAPE, generator=gen)
    out = few_step_sample(den, noise, Cond(emb), few_step_grid(), generator=gen)
    assert (out - noise).abs().mean() > 0.1
    torch.testing.assert_close(ref, out, atol=1e-6, rtol=0)
    # the export is itself a fastlight model folder: same weights, same sampler
    torch.testing.assert_close(load_denoiser(exported)(noise, torch.full((2,), 0.5), Cond(emb)),
                               den(noise, torch.full((2,), 0.5), Cond(emb)), atol=0, rtol=0)


@pytest.mark.parametrize("which", ["export", "run"])
def test_fastlight_sample_runs_on_the_export_and_the_run(exported, student, tmp_path, capsys, which):
    model = exported if which == "export" else student
    assert main(["sample", "--model", str(model), "--prompt", PROMPTS[0], "--out", str(tmp_path / "c.gif")]) == 0
    assert "4 few-step steps at timesteps 1000/750/500/250, no guidance (the model's own" in capsys.readouterr().out
    assert (tmp_path / "c.gif").stat().st_size > 0


def test_euler_teacher_without_sampler_json(tmp_path, shapes_model_factory, capsys):
    """A model without sampler.json exports with the Euler scheduler and its shift; CFG 4."""
    src = shapes_model_factory(tmp_path / "teacher", num_layers=2, perturb=0.1)
    out = tmp_path / "teacher_diffusers"
    assert main(["export", str(src), "--format", "diffusers", "--out", str(out)]) == 0
    assert "sampler: 50 Euler steps (shift 3), guidance 4 (the model's own, the default" in capsys.readouterr().out
    info = json.loads((out / "fastlight_export.json").read_text())
    assert info["sampler"]["sampler"] == "euler" and info["call"]["guidance_scale"] == 4.0
    assert SamplerSpec.load(out / "transformer") == SamplerSpec.euler(50, 4.0, 3.0)  # the default, written down
    pipe = load_pipe(out)
    assert not pipe.scheduler.config.stochastic_sampling and pipe.scheduler.config.shift == 3.0
    emb = text.encode(PROMPTS[:1])
    noise = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    ref = pipe(prompt_embeds=emb, negative_prompt_embeds=torch.zeros_like(emb), latents=noise.clone(),
               num_inference_steps=3, guidance_scale=4.0, output_type="latent").frames
    out_ours = euler_sample(load_denoiser(src), noise, Cond(emb), shifted_grid(3, 3.0), guidance=4.0)
    torch.testing.assert_close(ref, out_ours, atol=1e-5, rtol=0)


# ---- a real-Wan-like source: VAE linked, TI2V through WanImageToVideoPipeline ----------------------
def tiny_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 2.0, 0.5, 1.0])


def test_ti2v_source_pipeline_with_vae(tmp_path):
    """A latent-space TI2V student (patch 1x2x2) whose source pipeline has a VAE: the export links
    vae/, keeps expand_timesteps, and WanImageToVideoPipeline reproduces our TI2V few-step sampler
    (clean first frame = the VAE latent of the image, timestep 0 on its tokens)."""
    src = tmp_path / "wan_ti2v"
    tiny_vae().save_pretrained(src / "vae")
    (src / "model_index.json").write_text(json.dumps({
        "_class_name": "WanImageToVideoPipeline", "_diffusers_version": "0.42.1", "boundary_ratio": None,
        "expand_timesteps": True, "image_encoder": [None, None], "image_processor": [None, None],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": [None, None],
        "tokenizer": [None, None], "transformer": ["diffusers", "WanTransformer3DModel"],
        "transformer_2": [None, None], "vae": ["diffusers", "AutoencoderKLWan"]}))
    torch.manual_seed(0)
    den = WanDenoiser.from_config(**tiny_wan_config(in_channels=4, text_dim=16))
    with torch.no_grad():
        for p in den.model.blocks.parameters():
            p.add_(0.1 * torch.randn_like(p))
    den.save(tmp_path / "run" / "model", {"kind": "student", "shift": 5.0})
    write_sampler(tmp_path / "run" / "model", (1000, 757, 522))  # FastVideo's Wan grid: shift + terminal
    out = tmp_path / "exported"
    assert main(["export", str(tmp_path / "run"), "--format", "diffusers", "--out", str(out), "--source", str(src)]) == 0
    assert os.path.samefile(out / "vae" / "diffusion_pytorch_model.safetensors",
                            src / "vae" / "diffusion_pytorch_model.safetensors")  # linked, not copied
    pipe = load_pipe(out, WanImageToVideoPipeline, text_encoder=None, tokenizer=None)
    assert pipe.config.expand_timesteps and pipe.vae is not None
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 32, 32, generator=g)  # in [0, 1]
    emb = torch.randn(1, 3, 16, generator=g)
    noise = torch.randn(1, 4, 3, 4, 4, generator=g)  # 9 frames, 32 x 32 pixels
    torch.manual_seed(11)
    ref = pipe(image=image, prompt_embeds=emb, latents=noise.clone(), height=32, width=32, num_frames=9,
               num_inference_steps=3, guidance_scale=1.0, output_type="latent").frames
    # the image latent exactly as the pipeline computes it
    from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

    vae = pipe.vae
    pix = pipe.video_processor.preprocess(image, height=32, width=32).to(torch.float32)[:, :, None]
    mean = torch.tensor(vae.config.latents_mean).view(1, 4, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        cond_latent = (retrieve_latents(vae.encode(pix), sample_mode="argmax") - mean) * inv_std
    s_list = few_step_grid([1000, 757, 522])
    out_ours = few_step_sample(load_denoiser(out), noise, Cond(emb, image=cond_latent), s_list,
                               generator=torch.Generator().manual_seed(11))
    assert torch.equal(out_ours[:, :, :1], cond_latent)
    torch.testing.assert_close(ref, out_ours, atol=1e-5, rtol=0)


# ---- the scheduler fit -----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["wan", "hunyuan"])
@pytest.mark.parametrize("timesteps", [(1000, 750, 500, 250), (1000, 757, 522), (1000, 500), (1000,),
                                       (1000, 800, 600, 400, 200)])
def test_scheduler_reproduces_the_student_levels(timesteps, family):
    """Wan: WanPipeline's set_timesteps(K); HunyuanVideo: HunyuanVideoPipeline's
    set_timesteps(sigmas=linspace(1, 0, K + 1)[:-1]). Both land on the student's levels."""
    s = few_step_grid(timesteps)
    sched = scheduler_for(SamplerSpec.few_step(timesteps), family)
    assert sched.config.stochastic_sampling
    if family == "wan":
        sched.set_timesteps(len(s))
    else:
        sched.set_timesteps(sigmas=np.linspace(1.0, 0.0, len(s) + 1)[:-1])
    torch.testing.assert_close(sched.sigmas, torch.tensor(s + [0.0]), atol=1e-6, rtol=0)
    assert pipeline_levels(sched, len(s), family == "hunyuan") == sched.sigmas[:-1].tolist()
    if timesteps == (1000, 750, 500, 250):
        assert sched.config.shift == 1.0 and sched.sigmas.tolist() == s + [0.0]  # bit for bit


@pytest.mark.parametrize("family,needle", [("wan", "K-step scheduler grid"), ("hunyuan", "linspace(1, 0, K + 1)")])
def test_scheduler_refuses_grids_it_cannot_express(family, needle):
    with pytest.raises(ModelError, match="not a shifted") as e:
        scheduler_for(SamplerSpec.few_step((1000, 900, 300, 250)), family)
    assert needle in str(e.value) and len(str(e.value).splitlines()) == 1
    with pytest.raises(ModelError, match="starts at 1000"):
        scheduler_for(SamplerSpec.few_step((900, 500)), family)
    assert isinstance(scheduler_for(SamplerSpec.euler(shift=5.0), family), FlowMatchEulerDiscreteScheduler)
