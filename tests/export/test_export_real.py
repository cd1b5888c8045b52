"""`fastlight export --format diffusers` of real-family students (the tiny offline pipelines): a
depth-pruned few-step student of Wan 2.1 T2V, Wan 2.2 TI2V and HunyuanVideo T2V exports to a complete
stock pipeline folder, the stock class loads it, and its output equals our sampler's for the same
noise, re-noising stream and text embeddings, called the way fastlight_export.json says."""
import json
import os

import pytest
import torch
from diffusers import (HunyuanVideoPipeline, HunyuanVideoTransformer3DModel, WanImageToVideoPipeline, WanPipeline,
                       WanTransformer3DModel)
from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

from fastlight.cli import main
from fastlight.diffusion.sampling import sample
from fastlight.diffusion.spec import SamplerSpec
from fastlight.models.denoiser import Cond
from fastlight.models.load import load_denoiser


PROMPT = "a red circle moves left quickly"
FRAMES = 5  # -> 2 latent frames
TOL = 1e-5  # stock pipeline vs our sampler, float32 on CPU (measured: ~1e-7)


def load(folder, cls):
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def exported(real_student, tmp_path_factory):
    """`exported(kind)` -> the export folder of `real_student(kind)` (no --source: found from fastlight.json)."""
    made = {}

    def get(kind):
        if kind not in made:
            out = tmp_path_factory.mktemp("export") / kind
            assert main(["export", str(real_student(kind)), "--format", "diffusers", "--out", str(out)]) == 0
            made[kind] = out
        return made[kind]

    return get


def check_layout(out, pipeline, cls_name, transformer_cls, linked, changes):
    """The export: model_index of the source's class, linked (not copied) components, and a pruned
    transformer the stock class loads with `changes` in its config and exactly the kept blocks' parameters."""
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == cls_name and index["scheduler"][1] == "FlowMatchEulerDiscreteScheduler"
    info = json.loads((out / "fastlight_export.json").read_text())
    assert info["linked"] == linked and info["source_pipeline"] == str(pipeline)
    for comp in linked:
        for f in (pipeline / comp).rglob("*.safetensors"):
            assert os.path.samefile(f, out / comp / f.relative_to(pipeline / comp))
    model = transformer_cls.from_pretrained(out / "transformer")
    teacher = load_denoiser(pipeline)
    for key, value in changes.items():
        assert model.config[key] == value and teacher.model.config[key] > value
    drop = json.loads((out / "transformer" / "manifest.json").read_text())["dropped_blocks"]
    assert drop and len(teacher.blocks) - len(drop) == sum(changes.values())
    dropped = sum(b.num_params for b in teacher.blocks if b.index in drop)
    assert sum(p.numel() for p in model.parameters()) == teacher.num_params() - dropped == info["params"]
    for name in ("manifest.json", "plan.json", "sampler.json", "fastlight.json"):
        assert (out / "transformer" / name).is_file()
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["stochastic_sampling"] is True and sched["shift"] == 1.0
    return index, info


def test_wan21_t2v_export_equals_our_sampler(exported, real_student, tiny_pipeline):
    out, pipeline = exported("wan21-t2v"), tiny_pipeline("wan21-t2v")
    _, info = check_layout(out, pipeline, "WanPipeline", WanTransformer3DModel, ["vae", "text_encoder", "tokenizer"],
                           {"num_layers": 3})
    call = info["call"]
    assert call["num_inference_steps"] == 4 and call["guidance_scale"] == 1.0
    assert "irrelevant" in call["negative_prompt"] and "manual_seed" in call["seed"]
    pipe = load(out, WanPipeline)  # no component passed: vae, text encoder, tokenizer all come from the folder
    emb = pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=32)[0]
    noise = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    kw = dict(prompt=PROMPT, num_inference_steps=call["num_inference_steps"], guidance_scale=call["guidance_scale"],
              height=16, width=16, num_frames=FRAMES, max_sequence_length=32)
    torch.manual_seed(7)
    ref = pipe(**kw, latents=noise.clone(), output_type="latent").frames
    student = real_student("wan21-t2v") / "model"
    ours = sample(load_denoiser(student), noise, Cond(emb.float()), SamplerSpec.load(student),
                  generator=torch.Generator().manual_seed(7))
    assert (ours - noise).abs().mean() > 0.1
    torch.testing.assert_close(ref, ours, atol=TOL, rtol=0)
    # decoded: the pipeline's np video equals our latents decoded the way it decodes them
    torch.manual_seed(7)
    video = pipe(**kw, latents=noise.clone(), output_type="np").frames
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        ours_video = pipe.video_processor.postprocess_video(vae.decode(ours / inv_std + mean).sample, output_type="np")
    assert video.shape == (1, FRAMES, 16, 16, 3) and video.std() > 0
    assert abs(video - ours_video).max() < TOL


def image_latent(pipe, image, size):
    """The first frame's latent exactly as WanImageToVideoPipeline computes it (expand_timesteps)."""
    vae = pipe.vae
    pix = pipe.video_processor.preprocess(image, height=size, width=size).to(torch.float32)[:, :, None]
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        return (retrieve_latents(vae.encode(pix), sample_mode="argmax") - mean) * inv_std


def test_wan22_ti2v_export_keeps_expand_timesteps_and_equals_our_sampler(exported, real_student, tiny_pipeline):
    """Wan 2.2 TI2V-5B runs image-to-video through WanImageToVideoPipeline with expand_timesteps: the first
    frame's VAE latent replaces frame 0 of the model input and its tokens get timestep 0 (the mask's
    [:, ::2, ::2] stride is the 2x2 patch); that is our TI2V sampler with cond.image = that latent."""
    out, pipeline = exported("wan22-ti2v"), tiny_pipeline("wan22-ti2v")
    index, info = check_layout(out, pipeline, "WanPipeline", WanTransformer3DModel,
                               ["vae", "text_encoder", "tokenizer"], {"num_layers": 3})
    assert index["expand_timesteps"] is True and "WanImageToVideoPipeline" in info["call"]["image_to_video"]
    student = real_student("wan22-ti2v") / "model"
    den, spec = load_denoiser(student), SamplerSpec.load(student)
    t2v = load(out, WanPipeline)
    emb = t2v.encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=32)[0]
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(1, 48, 2, 2, 2, generator=g)
    image = torch.rand(1, 3, 32, 32, generator=g)
    kw = dict(prompt_embeds=emb, num_inference_steps=4, guidance_scale=1.0, height=32, width=32, num_frames=FRAMES,
              output_type="latent")
    # text-to-video through WanPipeline (per-token timesteps, all equal)
    torch.manual_seed(8)
    ref = t2v(**kw, latents=noise.clone()).frames
    ours = sample(den, noise, Cond(emb.float()), spec, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(ref, ours, atol=TOL, rtol=0)
    # text+image-to-video (prompt embeddings passed: the I2V prompt cleaning needs ftfy, not installed here)
    i2v = load(out, WanImageToVideoPipeline)
    assert i2v.config.expand_timesteps
    torch.manual_seed(9)
    ref = i2v(image=image, **kw, latents=noise.clone()).frames
    first = image_latent(i2v, image, 32)
    ours = sample(den, noise, Cond(emb.float(), image=first), spec, generator=torch.Generator().manual_seed(9))
    assert torch.equal(ours[:, :, :1], first) and (ours[:, :, 1:] - noise[:, :, 1:]).abs().mean() > 0.1
    torch.testing.assert_close(ref, ours, atol=TOL, rtol=0)


def test_hunyuan_export_equals_our_sampler(exported, real_student, tiny_pipeline):
    """HunyuanVideoPipeline hands its scheduler sigmas = linspace(1, 0, 5)[:-1]: with shift 1 exactly the
    student's 1000/750/500/250; embedded guidance 6 as our sampler's default, true CFG off."""
    out, pipeline = exported("hunyuan-t2v"), tiny_pipeline("hunyuan-t2v")
    _, info = check_layout(out, pipeline, "HunyuanVideoPipeline", HunyuanVideoTransformer3DModel,
                           ["vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"],
                           {"num_layers": 1, "num_single_layers": 1})
    call = info["call"]
    assert call == {**call, "num_inference_steps": 4, "true_cfg_scale": 1.0, "guidance_scale": 6.0}
    assert "irrelevant" in call["negative_prompt"]
    pipe = load(out, HunyuanVideoPipeline)
    emb, pooled, mask = pipe.encode_prompt(PROMPT, prompt_2=None, max_sequence_length=16)
    noise = torch.randn(1, 16, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(7)
    ref = pipe(prompt=PROMPT, latents=noise.clone(), num_inference_steps=call["num_inference_steps"],
               guidance_scale=call["guidance_scale"], true_cfg_scale=call["true_cfg_scale"], height=16, width=16,
               num_frames=FRAMES, max_sequence_length=16, output_type="latent").frames
    student = real_student("hunyuan-t2v") / "model"
    cond = Cond(emb.float(), extra={"pooled": pooled.float(), "text_mask": mask.float()})
    ours = sample(load_denoiser(student), noise, cond, SamplerSpec.load(student),
                  generator=torch.Generator().manual_seed(7))
    assert (ours - noise).abs().mean() > 0.1
    torch.testing.assert_close(ref, ours, atol=TOL, rtol=0)


def test_prune_only_model_finds_its_pipeline_through_pruned_from(tiny_pipeline, student_maker, tmp_path, capsys):
    """A `fastlight prune` output (no teacher entry, no sampler.json): the source pipeline is found from
    fastlight.json's pruned_from, and the export gets the Euler scheduler with the model's shift."""
    pipeline = tiny_pipeline("wan21-t2v")
    model = student_maker(pipeline, tmp_path / "run", [1], teacher=None) / "model"
    meta = json.loads((model / "fastlight.json").read_text())
    (model / "fastlight.json").write_text(json.dumps({**meta, "pruned_from": str(pipeline)}))
    (model / "sampler.json").unlink()
    out = tmp_path / "exp"
    assert main(["export", str(model), "--format", "diffusers", "--out", str(out)]) == 0
    assert "load it with WanPipeline.from_pretrained" in capsys.readouterr().out
    info = json.loads((out / "fastlight_export.json").read_text())
    assert info["source_pipeline"] == str(pipeline) and info["sampler"]["sampler"] == "euler"
    assert info["call"]["guidance_scale"] == 4.0 and "seed" not in info["call"]
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["stochastic_sampling"] is False and sched["shift"] == 3.0
