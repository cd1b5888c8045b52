"""The Shapes world as a real diffusers pipeline folder (fastlight/shapes/pipeline_folder.py): the phrase
encoder and tokenizer as library objects, the stock WanPipeline / WanImageToVideoPipeline loading and
generating, fastlight's loaders taking it as a pipeline teacher, and the latent shards of the train stream."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import fastlight.shapes.text_model as text_model
from fastlight.data.latents import LatentShardSource, check_shards_match
from fastlight.data.source import stream_generator
from fastlight.errors import InputError
from fastlight.models import presets
from fastlight.models.load import load_denoiser
from fastlight.run.pipeline import RunConfig, is_pipeline_teacher
from fastlight.shapes import bench, text, world as shapes
from fastlight.shapes.latent_data import _Vae, clip_at, default_world, write_shapes_shards
from fastlight.shapes.pipeline_folder import latent_transformer, shapes_pipeline_random, write_shapes_pipeline
from fastlight.shapes.source import ShapesSource
from tests.entry_points import PHRASE_ENCODER, write_dist_info

PROMPTS = ["a red circle moving left quickly", "A blue square staying still and a green triangle moves up slowly.",
           "a cyan triangle moves down fast"]
SMALL = dict(num_layers=2)  # the tests' transformer depth (the preset's is 16)


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    from fastlight.shapes.pipeline_folder import latent_transformer

    return write_shapes_pipeline(tmp_path_factory.mktemp("shapes") / "pipe", transformer=latent_transformer(0, **SMALL))


@pytest.fixture(scope="module")
def shards(pipe_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    return out, write_shapes_shards(out, pipe_dir, 10, shard_size=4, batch_size=3, progress=False)


def _wan(pipe_dir):
    from diffusers import WanPipeline

    return WanPipeline.from_pretrained(str(pipe_dir))


# ---- the text encoder and tokenizer ---------------------------------------------------------------------------
def test_folder_layout_names_the_phrase_encoder_module(pipe_dir):
    index = json.loads((pipe_dir / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["expand_timesteps"] is True
    assert index["text_encoder"] == ["fastlight.shapes.text_model", "ShapesPhraseEncoder"]
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    assert index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]
    vae = json.loads((pipe_dir / "vae" / "config.json").read_text())
    tcfg = json.loads((pipe_dir / "transformer" / "config.json").read_text())
    assert vae["z_dim"] == 16 and tcfg["in_channels"] == tcfg["out_channels"] == 16 and tcfg["text_dim"] == 32


def test_stock_prompt_embeds_are_text_encode_zero_padded(pipe_dir):
    """WanPipeline's own _get_t5_prompt_embeds (trim to the mask, zero-pad) gives text.encode exactly;
    the empty negative prompt gives all zeros (today's null)."""
    pipe = _wan(pipe_dir)
    assert isinstance(pipe.text_encoder, text_model.ShapesPhraseEncoder)
    pos, neg = pipe.encode_prompt(PROMPTS, negative_prompt=[""] * 3, do_classifier_free_guidance=True,
                                  max_sequence_length=512)
    want = torch.zeros(3, 512, text.TEXT_DIM)
    want[:, :text.MAX_OBJECTS] = text.encode(PROMPTS)
    assert pos.shape == (3, 512, 32) and torch.equal(pos, want)
    assert neg.shape == (3, 512, 32) and not neg.abs().any()
    assert pos[1, 1].abs().sum() > 0  # the second object's phrase token is there


def test_unknown_words_and_the_v2_world():
    tok, enc = text_model.build_tokenizer(), text_model.build_encoder("v2")
    v2 = shapes.WORLDS["v2"]
    three = "a red circle moving left steadily and a blue square staying still and a green triangle moving up quickly"
    ids = tok([three], return_tensors="pt")
    out = enc(ids.input_ids, ids.attention_mask).last_hidden_state
    assert enc.config.max_objects == 3 and torch.equal(out[0, :3], text.encode(three, v2)[0])
    assert not out[0, 3:].abs().any()
    one = tok(["a red circle moving left quickly"], return_tensors="pt")
    out = enc(one.input_ids, one.attention_mask).last_hidden_state
    assert out.shape == (1, 7, 32) and torch.equal(out[0, 0], text.encode("a red circle moving left quickly", v2)[0, 0])
    assert not out[0, 1:].abs().any()
    bad = tok(["a red elephant moving left quickly"], return_tensors="pt")
    with pytest.raises(text.PromptError, match="not in the Shapes vocabulary"):
        enc(bad.input_ids, bad.attention_mask)
    with pytest.raises(InputError, match="unknown Shapes world"):
        write_shapes_pipeline("unused", world="v3")


def test_auto_classes_load_the_saved_encoder_and_tokenizer(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    text_model.build_encoder().save_pretrained(tmp_path / "te")
    text_model.build_tokenizer().save_pretrained(tmp_path / "tok")
    enc, tok = AutoModel.from_pretrained(tmp_path / "te"), AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert isinstance(enc, text_model.ShapesPhraseEncoder) and enc.config.max_objects == text.MAX_OBJECTS
    x = tok(PROMPTS[1:2], padding="max_length", max_length=20, return_tensors="pt")
    assert int(x.attention_mask.sum()) == 13  # 12 words + </s>; the comma and full stop are dropped
    hidden = enc(x.input_ids, x.attention_mask).last_hidden_state
    assert torch.equal(hidden[:, :text.MAX_OBJECTS], text.encode(PROMPTS[1:2]))


# ---- the stock pipelines -----------------------------------------------------------------------------------------
def test_stock_wan_pipeline_generates_a_video(pipe_dir):
    for frames in (9, 17):
        out = _wan(pipe_dir)(PROMPTS[0], num_frames=frames, height=64, width=64, num_inference_steps=2,
                             output_type="np", generator=torch.Generator().manual_seed(0))
        video = np.asarray(out.frames)
        assert video.shape == (1, frames, 64, 64, 3) and np.isfinite(video).all() and video.std() > 0


def test_image_to_video_pipeline_takes_the_first_frame(pipe_dir, monkeypatch):
    import diffusers.pipelines.wan.pipeline_wan_i2v as i2v
    from diffusers import WanImageToVideoPipeline

    if getattr(i2v, "ftfy", None) is None:  # diffusers 0.42 calls ftfy unconditionally (a dependency now)
        monkeypatch.setattr(i2v, "ftfy", type("ftfy", (), {"fix_text": staticmethod(lambda s: s)}), raising=False)
    pipe = WanImageToVideoPipeline.from_pretrained(str(pipe_dir))
    world = default_world(9)
    first = shapes.render(clip_at(0, "train", 0, world), world)[:, 0]  # (3, H, W) in [-1, 1]
    image = Image.fromarray(((first.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    out = pipe(image=image, prompt=PROMPTS[0], num_frames=9, height=64, width=64, num_inference_steps=2,
               output_type="np", generator=torch.Generator().manual_seed(0))
    assert np.asarray(out.frames).shape == (1, 9, 64, 64, 3)


def test_fastlight_takes_it_as_a_pipeline_teacher(pipe_dir):
    assert is_pipeline_teacher(RunConfig(teacher=str(pipe_dir)))
    den = load_denoiser(pipe_dir)
    assert type(den.model).__name__ == "WanTransformer3DModel" and len(den.blocks) == 2


def test_preset_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(presets.CACHE_ENV, str(tmp_path))
    folder = shapes_pipeline_random()
    assert folder.parent == tmp_path / "shapes_pipelines" and (folder / "model_index.json").is_file()
    assert json.loads((folder / "transformer" / "config.json").read_text())["num_layers"] == 16
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert shapes_pipeline_random() == folder and (folder / "model_index.json").stat().st_mtime_ns == stamp


# ---- the latent shards ---------------------------------------------------------------------------------------------
def test_shards_are_the_latent_shard_source_format(shards, pipe_dir):
    folder, index = shards
    check_shards_match(folder, pipe_dir)  # the VAE fingerprint, latent channels, text width
    assert sorted(p.name for p in folder.iterdir()) == [".made.json", "index.json", "latents_00000.safetensors",
                                                        "latents_00001.safetensors",
                                                        "latents_00002.safetensors", "null.safetensors"]
    assert [s["num_samples"] for s in index["shards"]] == [4, 4, 2] and index["shapes"]["stream"] == "shapes/train"
    src = LatentShardSource(str(folder), batch_size=4, pipeline=str(pipe_dir))
    b = src.batch(0)
    assert b["x0"].shape == (4, 16, 3, 8, 8) and b["image"].shape == (4, 16, 1, 8, 8)
    assert torch.equal(b["image"], b["x0"][:, :, :1]) and b["x0"].std() > 0.1
    assert b["text"].shape == (4, 16, 32) and b["text_mask"].shape == (4, 16)  # the folder's own text length
    assert index["text"]["length"] == 16 == src.text_len
    assert src.null_text is not None and not src.null_text.abs().any()
    # row k: the train stream's clip k, its prompt's phrase tokens zero-padded
    row, prompt = src.shards[5], index["videos"][5]["caption"]
    assert prompt == clip_at(0, "train", 5, default_world()).prompt
    k = text.MAX_OBJECTS
    assert torch.equal(row["text"][:k], text.encode(prompt)[0]) and not row["text"][k:].abs().any()


def test_first_latent_frame_is_the_first_frame_encoded_alone(pipe_dir):
    """What synthesize stores as a TI2V `image` (the first frame encoded alone) is x0's first latent frame."""
    vae = _Vae(pipe_dir / "vae", "cpu", torch.float32)
    world = default_world(9)
    video = shapes.render_batch([clip_at(0, "train", k, world) for k in range(2)], world)
    torch.testing.assert_close(vae.encode(video)[:, :, :1], vae.encode(video[:, :, :1].contiguous()), atol=1e-5, rtol=0)


def test_the_same_shards_written_twice_have_one_content_identity(shards, pipe_dir, tmp_path):
    """A run's resume check hashes its data folder (input_identity): the writing's time and speed live in the
    hidden .made.json, so re-made identical data keeps the run's checkpoints."""
    from fastlight.train.checkpoint import input_identity

    out, _ = shards
    again = tmp_path / "again"
    write_shapes_shards(again, pipe_dir, 10, shard_size=4, batch_size=3, progress=False)
    assert input_identity(again) == input_identity(out)
    made = json.loads((again / ".made.json").read_text())
    assert made["created"] and made["encode_s_per_clip"] > 0
    assert "created" not in json.loads((again / "index.json").read_text())


def test_shards_come_from_the_training_stream_only(pipe_dir, tmp_path):
    world = default_world(9)
    seed = bench.SHAPESBENCH_SEED
    train = [clip_at(seed, "train", k, world) for k in range(30)]
    src = ShapesSource(batch_size=1, seed=seed, stream="train", size=64, num_frames=9, image=False)
    assert [c.prompt for c in train[:3]] == [src.batch(k)["prompts"][0] for k in range(3)]
    assert train[0] == shapes.sample_clip(stream_generator(seed, "shapes/train", 0, 0), world)
    held_out = bench.case_clips(30, world, seed, "test") + bench.case_clips(30, world, seed, "validation")
    assert not {c.objects for c in train} & {c.objects for c in held_out}
    for split in ("test", "validation", "holdout"):
        with pytest.raises(InputError, match="split"):
            write_shapes_shards(tmp_path / split, pipe_dir, 2, split=split, progress=False)
        assert not (tmp_path / split).exists()


def test_shards_command(pipe_dir, tmp_path, capsys):
    from fastlight.shapes.latent_data import main

    assert main([str(tmp_path / "s"), "--pipeline", str(pipe_dir), "--num-clips", "3", "--num-frames", "17"]) == 0
    assert "3 clips in 1 shard(s)" in capsys.readouterr().out
    src = LatentShardSource(str(tmp_path / "s"), batch_size=3, pipeline=str(pipe_dir))
    assert src.batch(0)["x0"].shape == (3, 16, 5, 8, 8)
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "t"), "--pipeline", str(pipe_dir), "--num-clips", "2", "--num-frames", "8"])
    assert e.value.code == 2 and "num_frames=8 does not fit the VAE" in capsys.readouterr().err


def test_shards_follow_the_folders_world(tmp_path, capsys):
    """A v2 folder (built by the command) gets clips of the v2 world its text encoder records, a v1 folder the
    v1 rules at its own VAE's size and radii."""
    from fastlight.shapes.latent_data import folder_world, main

    v2 = tmp_path / "v2"
    assert main([str(tmp_path / "s"), "--pipeline", str(v2), "--world", "v2", "--num-clips", "3"]) == 0
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    world = folder_world(v2, 9)
    assert world.name == "v2" and index["shapes"]["world"] == world.to_dict()
    assert [v["caption"] for v in index["videos"]] == [clip_at(0, "train", k, world).prompt for k in range(3)]
    assert folder_world(v2, 17).num_frames == 17


def test_shards_command_takes_a_model_preset(tmp_path, monkeypatch, capsys):
    """--pipeline NAME of a registered model preset (shapes-pipeline: the shipped teacher's) is its folder."""
    import fastlight.models.load as load
    from fastlight.shapes.latent_data import main

    pipe = write_shapes_pipeline(tmp_path / "preset_pipe", transformer=latent_transformer(0, num_layers=1), world="v2")
    monkeypatch.setattr(load, "registered", lambda group: {"test-shapes-preset": "x"} if group == "fastlight.models" else {})
    monkeypatch.setattr(load, "component", lambda group, name: lambda: pipe)
    assert main([str(tmp_path / "s"), "--pipeline", "test-shapes-preset", "--num-clips", "2"]) == 0
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["text"]["path"] == str(pipe) and index["shapes"]["world"]["world"] == "v2"
    assert not (tmp_path / "test-shapes-preset").exists()  # no random folder built under the name


def _register_components(folder):
    """pyproject's fastlight.pipeline_components entry point (for an install whose metadata predates it)."""
    return write_dist_info(folder, "fastlight-pipeline-components-test", "fastlight.pipeline_components",
                           [PHRASE_ENCODER])


def test_a_fresh_process_loads_the_folder_through_fastlight(pipe_dir, tmp_path):
    """diffusers imports no module a folder names: fastlight's resolve_model_path imports the registered
    plug-in class first, so the stock loader (and transformers' AutoConfig) find it in a fresh process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from diffusers import WanPipeline\n"
            "from fastlight.models.load import resolve_model_path\n"
            "if sys.argv[2] == 'resolve': print('imported', resolve_model_path(sys.argv[1]) is not None)\n"
            "try:\n    WanPipeline.from_pretrained(sys.argv[1]); print('loaded')\n"
            "except ValueError as e:\n    print('refused', 'has not been imported' in str(e))\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(_register_components(tmp_path / "ep"))])}
    outs = [subprocess.run([sys.executable, "-c", code, str(pipe_dir), how], env=env, capture_output=True,
                           text=True, timeout=300).stdout.split() for how in ("resolve", "plain")]
    assert outs[0][-1] == "loaded" and outs[1][-2:] == ["refused", "True"]


def test_only_registered_components_are_imported(tmp_path):
    from fastlight.models.load import import_pipeline_components

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline",
                                                           "text_encoder": ["fastlight_not_a_module", "Encoder"]}))
    assert import_pipeline_components(tmp_path) == []
    assert import_pipeline_components(tmp_path / "absent") == []


def test_latent_pretrain_recipe_loads():
    from pathlib import Path

    from fastlight.config import load_config
    from fastlight.train.pretrain import PretrainConfig

    path = Path(__file__).resolve().parents[2] / "configs" / "shapes" / "latent_pretrain.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m fastlight.shapes.latent_data ") and "fastlight pretrain " + str(
        path.relative_to(path.parents[2])) in first
    cfg = load_config(PretrainConfig, path, [])
    assert cfg.data["_component_"] == "latents" and cfg.threads == 1 and cfg.model.endswith("/transformer")
    assert cfg.hooks == [{"_component_": "shapes-latent-probe", "pipeline": cfg.data["pipeline"], "every": 500}]
