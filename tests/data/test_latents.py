import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fastlight.commands.preprocess import preprocess_command
from fastlight.data.latents import DataError, LatentShards, pick_bucket, preprocess
from fastlight.data.video import write_video

# tiny Wan VAE: 1 spatial downsample (x2), 1 temporal downsample (x2) -> frames 1 + 2k
VAE_CFG = dict(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
               latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.0, 2.0, 0.5, 1.5])


def _clip(seed, f, h, w):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(1, h, w, 3))
    return np.clip(base + np.arange(f)[:, None, None, None] * 8, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from diffusers import AutoencoderKLWan

    root = tmp_path_factory.mktemp("latents")
    vids = root / "videos"
    write_video(vids / "a.mp4", _clip(0, 9, 32, 32))
    write_video(vids / "b.mp4", _clip(1, 11, 32, 48))  # wide -> the 16x32 bucket
    write_video(vids / "sub" / "c.mp4", _clip(2, 9, 32, 32))
    write_video(vids / "short.mp4", _clip(3, 3, 32, 32))
    (vids / "broken.mp4").write_bytes(b"\x00junk, not a video" * 40)
    write_video(vids / "nocap.mp4", _clip(4, 9, 32, 32))
    caps = root / "captions.jsonl"
    caps.write_text("\n".join(json.dumps(r) for r in [
        {"video": "a.mp4", "caption": "a red ball"}, {"video": "b.mp4", "caption": "a blue box"},
        {"id": "c", "text": "a cat"}, {"video": "short.mp4", "caption": "short"},
        {"video": "broken.mp4", "caption": "broken"}]) + "\n")
    emb = root / "text.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file({"a": torch.randn(5, 6, generator=g), "b": torch.randn(3, 6, generator=g),
               "c": torch.randn(7, 6, generator=g), "short": torch.randn(2, 6, generator=g),
               "broken": torch.randn(2, 6, generator=g)}, str(emb))
    torch.manual_seed(0)
    vae_dir = root / "vae"
    AutoencoderKLWan(**VAE_CFG).save_pretrained(vae_dir)
    out = root / "shards"
    index = preprocess(vids, caps, vae_dir, out, num_frames=9, buckets=[(16, 16), (16, 32)],
                       text_embeds=emb, shard_size=1, progress=False)
    return dict(root=root, vids=vids, caps=caps, emb=emb, vae=vae_dir, out=out, index=index)


def test_index_shards_and_skipped(world):
    index, out = world["index"], world["out"]
    assert index["num_samples"] == 3 and len(index["shards"]) == 3
    assert {v["id"] for v in index["videos"]} == {"a", "b", "c"}
    reasons = {s["file"]: s["reason"] for s in index["skipped"]}
    assert set(reasons) == {"short.mp4", "broken.mp4", "nocap.mp4"}
    assert reasons["short.mp4"].startswith("too short: 3")
    assert reasons["broken.mp4"].startswith("unreadable")
    assert "no text embedding" in reasons["nocap.mp4"]
    assert json.loads((out / "index.json").read_text()) == index
    assert index["num_frames"] == 9 and index["buckets"] == [[16, 16], [16, 32]]
    for s in index["shards"]:
        t = load_file(str(out / s["file"]))
        n = s["num_samples"]
        H, W = s["bucket"]
        assert t["x0"].shape == (n, 4, 5, H // 2, W // 2)  # (N, C, 1 + (9-1)/2, H/2, W/2)
        assert t["text"].shape == (n, 7, 6) and t["text_mask"].shape == (n, 7)
    wide = [s for s in index["shards"] if s["bucket"] == [16, 32]]
    assert len(wide) == 1 and [v["id"] for v in index["videos"] if v["shard"] == wide[0]["file"]] == ["b"]


def test_latents_normalised_like_wan_pipeline(world):
    from diffusers import AutoencoderKLWan
    from fastlight.data.latents import decode_frames, resize_crop

    vae = AutoencoderKLWan.from_pretrained(world["vae"]).eval()
    f = resize_crop(decode_frames(world["vids"] / "a.mp4", 9), 16, 16)
    x = torch.from_numpy(f).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
    mean = torch.tensor(VAE_CFG["latents_mean"]).view(1, 4, 1, 1, 1)
    std = torch.tensor(VAE_CFG["latents_std"]).view(1, 4, 1, 1, 1)
    data = LatentShards(world["out"])
    i = [v["id"] for v in world["index"]["videos"]].index("a")
    torch.testing.assert_close(data[i]["x0"], ((z - mean) / std)[0], rtol=1e-5, atol=1e-5)


def test_dataset_items_batch_and_text_padding(world):
    data = LatentShards(world["out"], verify=True)
    assert len(data) == 3
    emb = load_file(str(world["emb"]))
    for i, v in enumerate(world["index"]["videos"]):
        it = data[i]
        L = emb[v["id"]].shape[0]
        assert torch.equal(it["text"][:L], emb[v["id"]]) and not it["text"][L:].any()
        assert it["text_mask"].tolist() == [1] * L + [0] * (7 - L)
    square = [i for i, v in enumerate(world["index"]["videos"]) if v["id"] in ("a", "c")]
    b = data.batch(square)
    assert b["x0"].shape == (2, 4, 5, 8, 8) and b["text"].shape == (2, 7, 6)
    with pytest.raises(ValueError, match="mixes buckets"):
        data.batch(range(3))
    with pytest.raises(IndexError):
        data[3]


def test_rerun_is_deterministic_and_command(world, tmp_path, capsys):
    out2 = tmp_path / "again"
    rc = preprocess_command(world["vids"], world["caps"], world["vae"], out2, num_frames=9, height=16, width=16,
                            text_embeds=world["emb"], shard_size=8)
    assert rc == 0 and "3 samples" in capsys.readouterr().out
    idx2 = json.loads((out2 / "index.json").read_text())
    assert len(idx2["shards"]) == 1  # one bucket, shard_size 8
    # same video, same bucket -> identical latents across runs
    a1 = LatentShards(world["out"])[[v["id"] for v in world["index"]["videos"]].index("a")]
    a2 = LatentShards(out2)[[v["id"] for v in idx2["videos"]].index("a")]
    assert torch.equal(a1["x0"], a2["x0"]) and torch.equal(a1["text"], a2["text"])
    # identical re-run into the same folder: byte-identical shard
    preprocess_command(world["vids"], world["caps"], world["vae"], out2, num_frames=9, height=16, width=16,
                       text_embeds=world["emb"], shard_size=8)
    again = json.loads((out2 / "index.json").read_text())
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in idx2["shards"]]
    # smaller shards into the same folder: stale shard files are removed
    preprocess(world["vids"], world["caps"], world["vae"], out2, num_frames=9, buckets=[(16, 16)],
               text_embeds=world["emb"], shard_size=2, progress=False)
    idx3 = json.loads((out2 / "index.json").read_text())
    assert [s["num_samples"] for s in idx3["shards"]] == [2, 1]
    assert sorted(p.name for p in out2.glob("latents_*")) == [s["file"] for s in idx3["shards"]]
    assert not list(out2.glob(".*tmp*"))


def test_missing_shard_is_one_line_error(world, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(world["out"], out)
    (out / world["index"]["shards"][1]["file"]).unlink()
    with pytest.raises(FileNotFoundError) as e:
        LatentShards(out)
    msg = str(e.value)
    assert "\n" not in msg and world["index"]["shards"][1]["file"] in msg and "re-run fastlight preprocess" in msg
    with pytest.raises(FileNotFoundError, match="fastlight preprocess"):
        LatentShards(tmp_path / "nowhere")


def test_bad_arguments(world, tmp_path):
    kw = dict(buckets=[(16, 16)], text_embeds=world["emb"], progress=False)
    with pytest.raises(DataError, match="1 \\+ 2k"):
        preprocess(world["vids"], world["caps"], world["vae"], tmp_path / "o", num_frames=8, **kw)
    with pytest.raises(DataError, match="divisible"):
        preprocess(world["vids"], world["caps"], world["vae"], tmp_path / "o", num_frames=9,
                   buckets=[(15, 16)], text_embeds=world["emb"], progress=False)
    with pytest.raises(DataError, match="exactly one"):
        preprocess(world["vids"], world["caps"], world["vae"], tmp_path / "o", num_frames=9, buckets=[(16, 16)])
    with pytest.raises(DataError, match="does not exist"):
        preprocess(world["vids"], tmp_path / "none.jsonl", world["vae"], tmp_path / "o", num_frames=9, **kw)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        preprocess(world["vids"], bad, world["vae"], tmp_path / "o", num_frames=9, **kw)


def test_pick_bucket():
    buckets = [(480, 832), (832, 480), (480, 480)]
    assert pick_bucket(720, 1280, buckets) == (480, 832)
    assert pick_bucket(1280, 720, buckets) == (832, 480)
    assert pick_bucket(500, 520, buckets) == (480, 480)


def test_shard_reads_as_calibration_latents(world):
    from fastlight.analyze.calib import load_latents

    s = world["index"]["shards"][0]
    x0, cond = load_latents(world["out"] / s["file"])
    assert x0.shape == (1, 4, 5, *(d // 2 for d in s["bucket"])) and cond.text.shape == (1, 7, 6)
    assert set(cond.extra) == {"text_mask"}


def test_corrupt_index_is_one_line_error(tmp_path):
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(DataError) as e:
        LatentShards(tmp_path)
    assert "\n" not in str(e.value) and "re-run fastlight preprocess" in str(e.value)


def test_latent_shard_source_epochs_buckets_and_ranks(world):
    from fastlight.data.latents import LatentShardSource
    from fastlight.data.source import DataSource, build_source

    src = build_source({"_component_": "latents", "path": str(world["out"])}, seed=1, batch_size=2)
    assert isinstance(src, LatentShardSource) and isinstance(src, DataSource)
    assert src.batches_per_epoch == 2  # bucket 16x16 holds a, c (one batch); bucket 16x32 holds b (filled up: b, b)
    data = LatentShards(world["out"])
    index_of = {tuple(data[i]["x0"].flatten()[:4].tolist()): i for i in range(len(data))}

    def rows(b):
        return sorted(index_of[tuple(x.flatten()[:4].tolist())] for x in b["x0"])
    seen = []
    for step in range(4):
        b = src.batch(step)
        assert b["x0"].shape[:2] == (2, 4) and b["text"].shape == (2, 7, 6) and b["text_mask"].shape == (2, 7)
        assert torch.equal(b["x0"], src.batch(step)["x0"])  # a pure function of the step
        seen.append(rows(b))
    wide = next(i for i in range(len(data)) if data[i]["x0"].shape[-1] == 16)
    for epoch in (seen[:2], seen[2:]):  # every epoch visits every sample; the wide one fills its batch
        assert sorted(map(tuple, epoch)) == sorted([tuple(i for i in range(3) if i != wide), (wide, wide)])
    again = LatentShardSource(str(world["out"]), batch_size=2, seed=1)  # a fresh source (a resumed run)
    assert torch.equal(again.batch(3)["x0"], src.batch(3)["x0"])
    r0, r1 = src.batch(0, 0, 2), src.batch(0, 1, 2)  # two processes share one global batch
    assert torch.equal(torch.cat([r0["x0"], r1["x0"]]), src.batch(0)["x0"])
    orders = {tuple(tuple(r) for r in LatentShardSource(str(world["out"]), batch_size=1, seed=s).epoch(0))
              for s in range(6)}
    assert len(orders) > 1  # the seed shuffles


def test_latent_shard_source_bad_specs(world, tmp_path):
    from fastlight.data.latents import LatentShardSource
    from fastlight.data.source import local_batch_size

    with pytest.raises(DataError, match="needs the folder"):
        LatentShardSource()
    with pytest.raises(FileNotFoundError, match="run `fastlight preprocess"):
        LatentShardSource(str(tmp_path / "nothing"))
    with pytest.raises(Exception, match="does not divide across 2 processes"):
        LatentShardSource(str(world["out"]), batch_size=3).batch(0, 0, 2)
    assert local_batch_size(4, 2) == 2


# ---- the null embedding and the VAE fingerprint travel with the shards; check_shards_match ---------------
@pytest.fixture(scope="module")
def wan_shards(world, tiny_pipeline, tmp_path_factory):
    """The world's videos preprocessed with the tiny Wan 2.1 pipeline's own VAE and text encoder."""
    wan = tiny_pipeline("wan21-t2v")
    out = tmp_path_factory.mktemp("wan_shards") / "shards"
    preprocess(world["vids"], world["caps"], wan, out, num_frames=5, buckets=[(16, 16)], text_encoder=wan,
               max_text_len=16, progress=False)
    return wan, out


def _edited_pipeline(wan, folder, transformer=None, perturb_vae=False):
    """A copy of `wan` whose transformer config has `transformer` changes, or whose VAE weights differ."""
    import shutil

    shutil.copytree(wan, folder)
    if transformer:
        f = folder / "transformer" / "config.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), **transformer}))
    if perturb_vae:
        w = next((folder / "vae").glob("*.safetensors"))
        tensors = load_file(str(w))
        name = sorted(tensors)[0]
        tensors[name] = tensors[name] + 1e-3
        save_file(tensors, str(w))
    return folder


def test_preprocess_records_the_vae_fingerprint_and_the_pipelines_null(world, wan_shards):
    from diffusers import WanPipeline
    from fastlight.data.latents import LatentShardSource, vae_fingerprint

    wan, out = wan_shards
    index = json.loads((out / "index.json").read_text())
    assert index["vae_fingerprint"] == vae_fingerprint(wan / "vae") and index["null"]["file"] == "null.safetensors"
    assert world["index"]["vae_fingerprint"] == vae_fingerprint(world["vae"]) and "null" not in world["index"]
    pipe = WanPipeline.from_pretrained(wan, transformer=None, vae=None)
    null = pipe.encode_prompt("", do_classifier_free_guidance=False, max_sequence_length=16)[0][:, :1]
    src = LatentShardSource(str(out), batch_size=3, pipeline=str(wan))  # the check passes
    torch.testing.assert_close(src.null_text, null, atol=1e-6, rtol=0)
    assert src.batch(0)["x0"].shape == (3, 16, 2, 2, 2)
    assert LatentShardSource(str(world["out"]), batch_size=2).null_text is None  # embeddings from a file: no null


@pytest.mark.parametrize("change, needle", [
    ("vae", "were made by another VAE (fingerprint"),
    ("channels", "hold 16-channel latents but pipeline"),
    ("text", "hold 32-wide text embeddings but pipeline"),
])
def test_check_shards_match_refuses_shards_of_another_pipeline(change, needle, wan_shards, tmp_path):
    from fastlight.data.latents import LatentShardSource, check_shards_match

    wan, out = wan_shards
    other = _edited_pipeline(wan, tmp_path / "other", transformer={"channels": {"in_channels": 8},
                                                                   "text": {"text_dim": 24}}.get(change),
                             perturb_vae=change == "vae")
    with pytest.raises(DataError) as e:
        check_shards_match(out, other)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg and str(out) in msg and str(other) in msg and "re-make the shards" in msg
    with pytest.raises(DataError, match=needle.split(" (")[0]):
        LatentShardSource(str(out), batch_size=1, pipeline=str(other))
    check_shards_match(out, wan)  # the pipeline that made them passes


def test_check_shards_match_refuses_shards_without_a_fingerprint(wan_shards, tmp_path):
    import shutil

    from fastlight.data.latents import check_shards_match

    wan, out = wan_shards
    old = tmp_path / "old"
    shutil.copytree(out, old)
    index = json.loads((old / "index.json").read_text())
    del index["vae_fingerprint"]
    (old / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="record no VAE fingerprint"):
        check_shards_match(old, wan)


def test_preprocess_with_hunyuans_text_encoders_stores_pooled_and_null(world, tiny_pipeline, tmp_path):
    from diffusers import HunyuanVideoPipeline
    from fastlight.data.latents import LatentShardSource, check_shards_match

    hy = tiny_pipeline("hunyuan-t2v")
    out = tmp_path / "shards"
    preprocess(world["vids"], world["caps"], hy, out, num_frames=5, buckets=[(16, 16)], text_encoder=hy,
               progress=False)
    check_shards_match(out, hy)
    src = LatentShardSource(str(out), batch_size=3)
    b = src.batch(0)
    assert b["text"].shape == (3, 256, 32) and b["extra"]["pooled"].shape == (3, 16)
    pipe = HunyuanVideoPipeline.from_pretrained(hy, transformer=None, vae=None)
    _, pooled, _ = pipe.encode_prompt("", max_sequence_length=256)
    torch.testing.assert_close(src.null_extra["pooled"], pooled, atol=1e-6, rtol=0)
