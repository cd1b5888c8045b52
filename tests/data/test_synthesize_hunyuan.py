"""`fastlight synthesize` on the tiny HunyuanVideo pipeline: the prompts are encoded as
HunyuanVideoPipeline.encode_prompt does (Llama in the prompt template, cropped, hidden_states[-3], its
mask; CLIP pooled), the teacher latents equal the stock pipeline's `output_type="latent"` output for the
same prompt and noise with true CFG against "" (to 1e-5), and the shards feed the latents source (text,
text_mask, extra) and a dpp run that keeps the shards' null."""
import json

import pytest
import torch
from diffusers import HunyuanVideoPipeline
from safetensors.torch import load_file

import fastlight.data.synthesize as synth
from fastlight.data.latents import LatentShardSource
from fastlight.data.source import stream_generator
from fastlight.data.synthesize import synthesize
from fastlight.errors import InputError
from fastlight.models.load import load_denoiser

PROMPTS = ["a dog runs through tall grass", "two cats play with yarn"]
KW = dict(num_steps=2, guidance=3.0, num_frames=5, height=16, width=16, shard_size=2, seed=3, batch_size=2,
          progress=False)


@pytest.fixture(scope="module")
def hunyuan(tiny_pipeline):
    return tiny_pipeline("hunyuan-t2v")


@pytest.fixture(scope="module")
def shards(hunyuan, tmp_path_factory):
    root = tmp_path_factory.mktemp("hy_synth")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    synthesize(hunyuan, root / "prompts.txt", root / "shards", **KW)
    return root / "shards"


@pytest.fixture(scope="module")
def stock(hunyuan):
    pipe = HunyuanVideoPipeline.from_pretrained(hunyuan)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_shards_feed_the_latents_source_with_text_mask_and_extra(shards):
    index = json.loads((shards / "index.json").read_text())
    made = index["synthesize"]["settings"]
    assert index["vae_class"] == "AutoencoderKLHunyuanVideo" and len(index["vae_fingerprint"]) == 16
    assert made["sampler"] == {"sampler": "euler", "num_steps": 2, "guidance": 3.0, "shift": 7.0}  # scheduler's shift
    assert made["levels"] == [1.0, 0.875, 0.0] and made["embedded_guidance"] == 6.0  # 7 * 0.5 / (1 + 6 * 0.5)
    src = LatentShardSource(str(shards), batch_size=2)
    b = src.batch(0)
    assert b["x0"].shape == (2, 16, 2, 2, 2) and torch.isfinite(b["x0"]).all()
    assert b["text"].shape == (2, 256, 32) and b["text_mask"].shape == (2, 256)
    assert set(b["extra"]) == {"pooled", "text_mask", "guidance"} and b["extra"]["pooled"].shape == (2, 16)
    assert torch.equal(b["extra"]["text_mask"], b["text_mask"]) and b["extra"]["guidance"].tolist() == [6000.0] * 2
    assert (b["text"].abs().sum(-1) > 0).float().eq(b["text_mask"]).all()  # padded positions are zero
    assert src.null_text.shape[0] == 1 and src.null_text.shape[2] == 32 and src.null_extra["pooled"].shape == (1, 16)


def test_text_null_and_latents_are_the_stock_pipelines(shards, hunyuan, stock):
    rows = load_file(str(shards / "latents_00000.safetensors"))
    emb, pooled, mask = stock.encode_prompt(PROMPTS[1], max_sequence_length=256)
    n = int(mask.sum())
    assert rows["text_mask"][1].tolist() == mask[0].tolist()  # valid tokens first, as the pipeline's mask
    torch.testing.assert_close(rows["text"][1, :n], emb[0, :n], atol=1e-6, rtol=0)
    torch.testing.assert_close(rows["extra.pooled"][1], pooled[0], atol=1e-6, rtol=0)
    src = LatentShardSource(str(shards), batch_size=2)
    null, null_pooled, null_mask = stock.encode_prompt("", max_sequence_length=256)
    torch.testing.assert_close(src.null_text[0], null[0, :int(null_mask.sum())], atol=1e-6, rtol=0)
    torch.testing.assert_close(src.null_extra["pooled"], null_pooled, atol=1e-6, rtol=0)
    # true CFG 3 against the negative prompt "", embedded guidance 6, 2 Euler steps, the same noise
    noise = torch.randn(16, 2, 2, 2, generator=stream_generator(3, synth.NOISE_STREAM, 1, 0))[None]
    ref = stock(prompt=PROMPTS[1], negative_prompt="", true_cfg_scale=3.0, guidance_scale=6.0, num_inference_steps=2,
                num_frames=5, height=16, width=16, latents=noise.clone(), output_type="latent").frames
    torch.testing.assert_close(rows["x0"][1], ref[0], atol=1e-5, rtol=0)  # float rounding of a batch of 2 vs 1
    plain = stock(prompt=PROMPTS[1], num_inference_steps=2, num_frames=5, height=16, width=16, latents=noise.clone(),
                  output_type="latent").frames  # without CFG: far off, so the check above has teeth
    assert (plain[0] - rows["x0"][1]).abs().max() > 1e-2


def test_two_dpp_steps_train_on_hunyuan_shards_and_keep_their_null(shards, hunyuan, tmp_path, capsys):
    from fastlight.analyze.plans import depth_plan, write_plan
    from fastlight.train.entry import available_recipes
    from fastlight.train.loop import train

    den = load_denoiser(hunyuan)
    rows = [{"index": i, "score": sc} for i, sc in enumerate([1.0, 0.9, 0.1, 1.0])]
    plan = write_plan(tmp_path / "plan.json", depth_plan(rows, den, 0.05, keep_ends=True, verbose=False))
    config_cls, recipe_cls = available_recipes()["dpp"]
    cfg = config_cls(out=str(tmp_path / "run"), teacher=str(hunyuan / "transformer"), plan=str(plan), batch_size=2,
                     steps=2, save_every=2, log_every=1, lr=1e-3, warmup_steps=0, cpu=True, threads=1, alpha=0.5,
                     p=0.5, cfg_dropout=0.5, data={"_component_": "latents", "path": str(shards)})
    out = train(recipe_cls(cfg), cfg, progress=False)
    assert "null text: the model has none of its own; using the data's" in capsys.readouterr().out
    metrics = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    trained = load_denoiser(out)
    src = LatentShardSource(str(shards), batch_size=2)
    assert torch.equal(trained.null_text, src.null_text) and torch.equal(trained.null_pooled, src.null_extra["pooled"])
    assert any(not torch.equal(v, den.state_dict()[k]) for k, v in trained.state_dict().items())


def test_hunyuan_refuses_what_it_cannot_do(hunyuan, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    with pytest.raises(InputError, match="--text-embeds is not supported for HunyuanVideo"):
        synthesize(hunyuan, prompts, tmp_path / "o", text_embeds=tmp_path / "e.safetensors", **KW)
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="--embedded-guidance applies to HunyuanVideo pipelines only"):
        synth._embedded_guidance("wan", {}, 3.0, None)
    with pytest.raises(InputError, match="needs a guidance-distilled HunyuanVideo transformer"):
        synth._embedded_guidance("hunyuan", {"guidance_embeds": False}, 3.0, None)


def test_the_verb_drives_hunyuan_and_refuses_a_missing_clip(hunyuan, tmp_path, capsys):
    import shutil

    from fastlight.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    cli = ["--prompts", str(prompts), "--num-steps", "1", "--num-frames", "5", "--height", "16", "--width", "16",
           "--max-text-len", "64", "--no-progress", "--device", "cpu"]
    assert main(["synthesize", str(hunyuan), "--out", str(tmp_path / "out"), *cli, "--embedded-guidance", "4"]) == 0
    assert "(1 Euler steps, guidance 1, shift 7, seed 0)" in capsys.readouterr().out  # the stock default: no true CFG
    rows = load_file(str(tmp_path / "out" / "latents_00000.safetensors"))
    assert rows["extra.guidance"].tolist() == [4000.0] and rows["text"].shape == (1, 64, 32)
    bare = tmp_path / "bare"
    shutil.copytree(hunyuan, bare, ignore=shutil.ignore_patterns("text_encoder_2"))
    assert main(["synthesize", str(bare), "--out", str(tmp_path / "out2"), *cli]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no text_encoder_2/" in err[0] and not (tmp_path / "out2").exists()
