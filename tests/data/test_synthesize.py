"""`fastlight synthesize`: prompts -> teacher latents (CFG) in preprocess's shard format, from the tiny
Wan 2.1 pipeline; the `latents` source reads them and a recipe trains on them; batching and resuming
do not change a sample; bad input is one line, exit 2, nothing written."""
import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file, save_file

import fastlight.data.synthesize as synth
from fastlight.cli import main
from fastlight.data.latents import LatentShardSource
from fastlight.data.synthesize import synthesize
from fastlight.errors import DataError, OutputExistsError
from fastlight.models.load import load_denoiser

PROMPTS = ["a red circle moves left quickly", "a dog runs through tall grass", "two cats play with yarn"]
KW = dict(num_steps=2, guidance=4.0, num_frames=5, height=16, width=16, max_text_len=16, shard_size=2,
          samples_per_prompt=2, seed=3, progress=False)
CLI = ["--num-steps", "2", "--num-frames", "5", "--height", "16", "--width", "16", "--max-text-len", "16",
       "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def wan(tiny_pipeline):
    return tiny_pipeline("wan21-t2v")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    f = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    f.write_text("# three prompts\n" + "\n\n".join(PROMPTS) + "\n")
    return f


@pytest.fixture(scope="module")
def shards(wan, prompts, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "shards"
    synthesize(wan, prompts, out, batch_size=3, **KW)
    return out


def shard_tensors(out):
    index = json.loads((out / "index.json").read_text())
    return [load_file(str(out / s["file"])) for s in index["shards"]]


def test_shards_feed_the_latents_source(shards, wan):
    den = load_denoiser(wan)
    index = json.loads((shards / "index.json").read_text())
    assert index["num_samples"] == 6 and [s["num_samples"] for s in index["shards"]] == [2, 2, 2]
    made = index["synthesize"]["settings"]
    assert made["sampler"] == {"sampler": "euler", "num_steps": 2, "guidance": 4.0, "shift": 3.0}  # scheduler's shift
    assert made["seed"] == 3 and made["pipeline"] == str(wan.resolve()) and len(index["vae_fingerprint"]) == 16
    assert [v["caption"] for v in index["videos"]] == [p for p in PROMPTS for _ in range(2)]
    assert not (shards / synth.PROGRESS_NAME).exists()
    b = LatentShardSource(str(shards), batch_size=4, seed=0).batch(0)
    assert b["x0"].shape == (4, den.model.config.in_channels, 2, 2, 2) and torch.isfinite(b["x0"]).all()
    assert b["text"].shape == (4, 16, den.model.config.text_dim) and b["text_mask"].shape == (4, 16)
    assert "image" not in b  # text-to-video shards carry no first frame
    rows = shard_tensors(shards)[0]  # prompt 0, samples 0 and 1: same text, different latents
    assert torch.equal(rows["text"][0], rows["text"][1]) and not torch.allclose(rows["x0"][0], rows["x0"][1])


def test_text_is_the_stock_pipelines_encoding(shards, wan):
    pipe = WanPipeline.from_pretrained(wan, transformer=None, vae=None)
    emb = pipe.encode_prompt(PROMPTS[1], do_classifier_free_guidance=False, max_sequence_length=16)[0]
    rows = shard_tensors(shards)[1]  # prompt 1
    torch.testing.assert_close(rows["text"][0], emb[0], atol=1e-6, rtol=0)
    assert rows["text_mask"][0].sum() == (emb[0].abs().sum(-1) > 0).sum()


def test_the_latents_are_our_sampler_on_the_seeded_noise(shards, wan):
    from fastlight.data.source import stream_generator
    from fastlight.diffusion.sampling import sample
    from fastlight.diffusion.spec import SamplerSpec
    from fastlight.models.denoiser import Cond

    den = load_denoiser(wan)
    rows = shard_tensors(shards)[2]  # prompt 2: sample 0 then 1
    pipe = WanPipeline.from_pretrained(wan, transformer=None, vae=None)
    den.null_text = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=16)[0][:, :1]
    noise = torch.randn(16, 2, 2, 2, generator=stream_generator(3, synth.NOISE_STREAM, 2, 1))[None]
    x0 = sample(den, noise, Cond(rows["text"][1:2]), SamplerSpec.euler(2, 4.0, 3.0))
    torch.testing.assert_close(x0, rows["x0"][1:2], atol=1e-5, rtol=0)  # batch 1 here, 3 there: see below


def test_batch_size_does_not_change_the_shards(shards, wan, prompts, tmp_path):
    """Same noise, text and sampler per sample whatever the batching; the latents agree to float
    rounding only: a batched GEMM (MKL on CPU, cuBLAS) rounds a row differently for another batch size."""
    synthesize(wan, prompts, tmp_path / "one", batch_size=1, **KW)
    for a, b in zip(shard_tensors(shards), shard_tensors(tmp_path / "one")):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in ("text", "text_mask"))
        torch.testing.assert_close(a["x0"], b["x0"], atol=1e-5, rtol=0)
    # the same batching gives the same bits: the resume test compares shard checksums


def test_an_interrupted_run_resumes_to_the_same_shards(shards, wan, prompts, tmp_path, monkeypatch):
    out, calls = tmp_path / "run", []
    generate = synth._generate

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kw)

    monkeypatch.setattr(synth, "_generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthesize(wan, prompts, out, batch_size=3, **KW)
    assert sorted(p.name for p in out.iterdir()) == ["latents_00000.safetensors", synth.PROGRESS_NAME]
    calls.clear()
    monkeypatch.setattr(synth, "_generate", lambda *a, **k: (calls.append(1), generate(*a, **k))[1])
    index = synthesize(wan, prompts, out, batch_size=3, **KW)
    assert len(calls) == 2  # shard 0 was skipped
    ref = json.loads((shards / "index.json").read_text())
    assert [s["sha256"] for s in index["shards"]] == [s["sha256"] for s in ref["shards"]]
    calls.clear()
    synthesize(wan, prompts, out, batch_size=3, **KW)  # a finished run: nothing to do
    assert calls == []
    with pytest.raises(OutputExistsError, match="differs in: seed"):
        synthesize(wan, prompts, out, batch_size=3, **{**KW, "seed": 4})


def test_precomputed_text_embeddings_replace_the_encoder(wan, prompts, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(wan, bare, ignore=shutil.ignore_patterns("text_encoder", "tokenizer"))
    g = torch.Generator().manual_seed(0)
    emb = {str(i): torch.randn(3 + i, 32, generator=g) for i in range(3)}
    save_file({**emb, "null": torch.zeros(1, 32)}, str(tmp_path / "emb.safetensors"))
    index = synthesize(bare, prompts, tmp_path / "out", text_embeds=tmp_path / "emb.safetensors",
                       **{**KW, "samples_per_prompt": 1})
    assert index["text"]["source"] == "file" and index["num_samples"] == 3
    rows = shard_tensors(tmp_path / "out")[0]
    assert rows["text"].shape == (2, 5, 32) and torch.equal(rows["text"][1, :4], emb["1"])
    assert rows["text_mask"][0].tolist() == [1, 1, 1, 0, 0]


def test_the_shards_record_the_pipelines_null_and_the_source_exposes_it(shards, wan):
    pipe = WanPipeline.from_pretrained(wan, transformer=None, vae=None)
    null = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=16)[0][:, :1]
    index = json.loads((shards / "index.json").read_text())
    assert index["null"]["file"] == "null.safetensors" and index["null"]["prompt"] == ""
    src = LatentShardSource(str(shards), batch_size=2)
    torch.testing.assert_close(src.null_text, null, atol=1e-6, rtol=0)
    assert src.null_extra == {} and "extra" not in src.batch(0)  # Wan: no architecture-specific conditioning


def test_a_model_keeps_a_null_of_its_own(shards, wan, capsys):
    from fastlight.train.batches import adopt_null, has_default_null

    src, den = LatentShardSource(str(shards), batch_size=2), load_denoiser(wan)
    own = torch.ones(1, 2, den.model.config.text_dim)
    den.null_text = own
    assert not has_default_null(den) and not adopt_null(den, src) and torch.equal(den.null_text, own)
    den.null_text = torch.zeros(1, 1, den.model.config.text_dim)
    assert has_default_null(den) and adopt_null(den, src) and torch.equal(den.null_text, src.null_text)
    assert "using the data's" in capsys.readouterr().out
    den.null_text = torch.zeros(1, 1, den.model.config.text_dim)
    src.null_text = torch.zeros(1, 3, 8)  # shards of another model
    with pytest.raises(DataError, match="is 8 wide but the model reads 32-wide text"):
        adopt_null(den, src)


def test_a_recipe_trains_on_synthesized_shards(shards, wan, tmp_path, capsys):
    from fastlight.analyze.plans import depth_plan, write_plan
    from fastlight.train.entry import available_recipes
    from fastlight.train.loop import train

    den = load_denoiser(wan)
    rows = [{"index": i, "score": sc} for i, sc in enumerate([1.0, 0.9, 0.1, 1.0])]
    plan = write_plan(tmp_path / "plan.json", depth_plan(rows, den, 0.05, keep_ends=True, verbose=False))
    config_cls, recipe_cls = available_recipes()["dpp"]
    cfg = config_cls(out=str(tmp_path / "run"), teacher=str(wan / "transformer"), plan=str(plan), batch_size=2,
                     steps=2, save_every=2, log_every=1, lr=1e-3, warmup_steps=0, ema_decay=0.5, cpu=True, threads=1,
                     alpha=0.5, p=0.5, data={"_component_": "latents", "path": str(shards)})
    out = train(recipe_cls(cfg), cfg, progress=False)
    assert capsys.readouterr().out.count("null text: the model has none of its own; using the data's") == 1
    metrics = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    trained, start = load_denoiser(out).state_dict(), den.state_dict()
    assert trained.keys() == start.keys() and any(not torch.equal(v, start[k]) for k, v in trained.items())
    # the saved model's null is the pipeline's encoding of "" (the export and later stages carry it)
    pipe = WanPipeline.from_pretrained(wan, transformer=None, vae=None)
    null = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=16)[0][:, :1]
    assert not den.null_text.any()  # from the pipeline folder: the default zeros
    torch.testing.assert_close(load_denoiser(out).null_text, null, atol=1e-6, rtol=0)


def _frames(folder, n):
    """n random 32x32 first frames named 0.png .. n-1.png."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray((np.random.RandomState(i).rand(32, 32, 3) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_ti2v_first_frames_are_the_stock_pipelines_image_latents(tiny_pipeline, prompts, tmp_path):
    """--images on the Wan 2.2 TI2V pipeline: each prompt's frame is encoded as WanImageToVideoPipeline does
    (clean first latent frame), kept in x0 and stored as `image`."""
    from diffusers import WanImageToVideoPipeline
    from PIL import Image

    ti2v = tiny_pipeline("wan22-ti2v")
    frames = _frames(tmp_path / "frames", 3)
    synthesize(ti2v, prompts, tmp_path / "out", images=frames, **{**KW, "height": 32, "width": 32, "shard_size": 6})
    rows = shard_tensors(tmp_path / "out")[0]
    assert rows["image"].shape == (6, 48, 1, 2, 2) and torch.equal(rows["x0"][:, :, :1], rows["image"])
    assert torch.equal(rows["image"][0], rows["image"][1]) and not torch.equal(rows["image"][0], rows["image"][2])
    pipe = WanImageToVideoPipeline.from_pretrained(ti2v)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(image=Image.open(frames / "1.png"), prompt_embeds=rows["text"][2:3], guidance_scale=1.0,
               num_inference_steps=1, height=32, width=32, num_frames=5, output_type="latent").frames
    torch.testing.assert_close(rows["image"][2], ref[0, :, :1], atol=1e-5, rtol=0)
    # the latents source hands the first frame on, so a TI2V recipe trains image-conditioned
    b = LatentShardSource(path=str(tmp_path / "out"), batch_size=6).batch(0)
    assert b["image"].shape == (6, 48, 1, 2, 2) and torch.equal(b["x0"][:, :, :1], b["image"])


# ---- bad input: one line, exit 2, nothing written ---------------------------------------------------
def _pipeline_without(wan, tmp_path, part):
    folder = tmp_path / f"no_{part}"
    shutil.copytree(wan, folder, ignore=shutil.ignore_patterns(part))
    return folder


@pytest.mark.parametrize("case, needle", [
    ("no_text_encoder", "has no text_encoder/"),
    ("no_transformer", "has no transformer/"),
    ("other_class", "synthesize supports Wan and HunyuanVideo text-to-video pipelines"),
    ("empty_prompts", "holds no prompts"),
    ("missing_prompts", "does not exist"),
    ("frames", "use 1 + 4k frames, e.g. 5"),
    ("size", "must be multiples of 16x16"),
    ("images_t2v", "--images needs a TI2V pipeline"),
    ("images_missing", "has no image for prompt 2 (1 of 3 missing)"),
    ("foreign_out", "not made by fastlight synthesize"),
    ("embeds_missing", "has no entry '2' (1 of 3 prompts missing)"),
    ("embeds_width", "text embeddings are 8 wide but the transformer's text_dim is 32"),
    ("broken_image", "is not a readable image"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, needle, wan, prompts, tiny_pipeline, tmp_path, capsys):
    pipeline, prompt_file, out, extra = wan, prompts, tmp_path / "out", []
    if case == "no_text_encoder":
        pipeline = _pipeline_without(wan, tmp_path, "text_encoder")
    elif case == "no_transformer":
        pipeline = _pipeline_without(wan, tmp_path, "transformer")
    elif case == "other_class":
        pipeline = tmp_path / "ltx"
        shutil.copytree(wan, pipeline)
        index = json.loads((pipeline / "model_index.json").read_text())
        (pipeline / "model_index.json").write_text(json.dumps({**index, "_class_name": "LTXPipeline"}))
    elif case == "empty_prompts":
        prompt_file = tmp_path / "empty.txt"
        prompt_file.write_text("# nothing\n\n")
    elif case == "missing_prompts":
        prompt_file = tmp_path / "none.txt"
    elif case == "frames":
        extra = ["--num-frames", "6"]
    elif case == "size":
        extra = ["--height", "24"]
    elif case == "images_t2v":
        extra = ["--images", str(_frames(tmp_path / "frames", 3))]
    elif case == "images_missing":
        pipeline, extra = tiny_pipeline("wan22-ti2v"), ["--images", str(_frames(tmp_path / "frames", 2)),
                                                        "--height", "32", "--width", "32"]
    elif case in ("embeds_missing", "embeds_width"):
        n, d = (2, 32) if case == "embeds_missing" else (3, 8)
        save_file({str(i): torch.ones(2, d) for i in range(n)}, str(tmp_path / "emb.safetensors"))
        extra = ["--text-embeds", str(tmp_path / "emb.safetensors")]
    elif case == "broken_image":
        frames = _frames(tmp_path / "frames", 3)
        (frames / "1.png").write_bytes(b"not a png")
        pipeline, extra = tiny_pipeline("wan22-ti2v"), ["--images", str(frames), "--height", "32", "--width", "32"]
    elif case == "foreign_out":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    rc = main(["synthesize", str(pipeline), "--prompts", str(prompt_file), "--out", str(out), *CLI, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    if case == "no_text_encoder":
        assert "--text-embeds" in err[0]
    if case == "foreign_out":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_the_verb_writes_shards_and_says_how(wan, prompts, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synthesize", str(wan), "--prompts", str(prompts), "--out", str(out), *CLI, "--guidance", "3",
                 "--seed", "7", "--batch-size", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"wrote {out / 'index.json'}: 3 samples in 1 shard(s) (2 Euler steps, guidance 3, shift 3, seed 7)"
    assert LatentShardSource(str(out), batch_size=3).batch(0)["x0"].shape == (3, 16, 2, 2, 2)


def test_two_expert_and_wan21_i2v_pipelines_are_refused(wan, tmp_path):
    from fastlight.data.synthesize import check_pipeline
    from fastlight.errors import ModelError

    folder = tmp_path / "a14b"
    shutil.copytree(wan, folder)
    index = json.loads((folder / "model_index.json").read_text())
    two = {**index, "transformer_2": ["diffusers", "WanTransformer3DModel"]}
    (folder / "model_index.json").write_text(json.dumps(two))
    with pytest.raises(ModelError, match="two experts"):
        check_pipeline(folder)
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "WanImageToVideoPipeline"}))
    with pytest.raises(ModelError, match="Wan 2.1 image-to-video"):
        check_pipeline(folder)
