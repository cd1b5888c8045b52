"""Shapes clips as latent shards: the Shapes world's data for the real-model code path.

    folder = write_shapes_pipeline("runs/shapes_pipe")
    index = write_shapes_shards("runs/shapes_shards", folder, num_clips=4000)   # train stream only
    source = LatentShardSource("runs/shapes_shards", batch_size=16, pipeline=str(folder))

Clip k is `world.sample_clip` from stream `shapes/<split>`, step k, row 0 of `seed`
(fastlight.data.source.stream_generator): the clip `ShapesSource(seed=seed, stream=split,
batch_size=1).batch(k)` renders. Only the `train` and `calibration` streams may be written: the
`validation` and `test` streams are ShapesBench's held-out cases (fastlight/shapes/bench.py) and are
disjoint namespaces of the same seed, so no shard holds an evaluation clip.

Each clip is rendered at the world's size (64 x 64, 9 or 17 frames: the shipped VAE's world by
default), encoded by the pipeline's own VAE (posterior mode, normalised as the Wan pipelines do:
`fastlight.data.latents._Vae`, what `preprocess` uses) and its prompt by the pipeline's own text
encoder and tokenizer, as synthesize encodes prompts (prompt_clean, `text_len` tokens, padding zeroed;
default the pipeline's own text length, `fastlight.data.latents.pipeline_text_len`: 16 for a v1 Shapes
pipeline folder, the stock WanPipeline's 512 for one that records none). The shards store the
embeddings padded to that length and record it (index.json `text.length`); a length shorter than the
encoder world's longest prompt would cut prompts and is refused. x0's first latent frame is stored as `image` (N, 16, 1, 8, 8), the clean
frame a TI2V model is conditioned on: the VAE is causal in time, so it is exactly the first frame
encoded alone, as synthesize encodes a TI2V first frame. The folder is exactly the `LatentShardSource` layout
(fastlight/data/latents.py; its writer's pieces: `_save_tensors_atomic`, `save_null`, `vae_fingerprint`):
latents_NNNNN.safetensors {x0, text, text_mask, image}, null.safetensors (the empty prompt: zeros)
and index.json (with a `shapes` record: world, seed, split, what the clips are). The whole folder is
written atomically (`atomic_dir`).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fastlight.data.latents import (INDEX_NAME, MADE_NAME, NEGATIVE_PROMPT, SHARD_PATTERN, _EncoderEmbeds, _pad_text,
                                    _save_tensors_atomic, _Vae, pipeline_text_len, save_null, vae_fingerprint,
                                    write_made)
from fastlight.data.source import stream_generator
from fastlight.data.synthesize import check_pipeline
from fastlight.errors import InputError, ModelError
from fastlight.fileio import atomic_dir, atomic_write_json, read_json_object
from fastlight.shapes import clips as shape_clips
from fastlight.shapes import text_model  # also registers the phrase encoder with transformers' Auto classes
from fastlight.shapes import world as shapes

SPLITS = ("train", "calibration")  # validation / test are ShapesBench's held-out streams
HELD_OUT = ("validation", "test")
WAN_TEXT_LEN = 512  # WanPipeline's default max_sequence_length


def default_world(num_frames: int = 9, p_two_objects: float = 0.3, vae: str | Path | None = None) -> shapes.WorldConfig:
    """The v1 rules at the size and radii a Shapes VAE was trained on (`vae`'s manifest; default the shipped
    VAE: 64 x 64, radii 9.3-12 px): the world of a v1 pipeline folder's shards."""
    c = shape_clips.ShapesClips.for_vae(vae or shape_clips.vae_dir(), num_frames=num_frames)
    return shapes.WorldConfig(size=c.size, num_frames=c.num_frames, p_two_objects=p_two_objects,
                              radius_min_px=c.radius_min_px, radius_max_px=c.radius_max_px)


def folder_world(folder: str | Path, num_frames: int) -> shapes.WorldConfig:
    """The world a Shapes pipeline folder's text encoder records (`world` in its config: the phrase slots and
    speed words it reads), at `num_frames` frames: a v2 record as recorded; a v1 record the v1 rules at the
    folder's own VAE's size and radii (`default_world`). Shards, evaluation and the oracle all use it."""
    folder = Path(folder)
    cfg = read_json_object(folder / "text_encoder" / "config.json", ModelError, "rewrite the pipeline folder")
    recorded = shapes.WorldConfig.from_dict(cfg.get("world") or {})
    if recorded.name == "v1":
        vae = folder / "vae" if (folder / "vae" / "manifest.json").is_file() else None
        return default_world(num_frames, recorded.p_two_objects, vae)
    return dataclasses.replace(recorded, num_frames=num_frames, speeds_px=dict(recorded.speeds_px),
                               extra=dict(recorded.extra))


def stream_name(split: str) -> str:
    """The stream namespace a split's clips come from (ShapesSource's `shapes/<stream>`)."""
    if split in HELD_OUT:
        raise InputError(f"split {split!r} is a held-out stream (ShapesBench's {split} cases); shards are for "
                         f"training: use split={' or '.join(SPLITS)}")
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use {' or '.join(SPLITS)}")
    return f"shapes/{split}"


def clip_at(seed: int, split: str, k: int, world: shapes.WorldConfig) -> shapes.Clip:
    """Clip k of the split's stream (step k, row 0: ShapesSource(seed, stream=split, batch_size=1).batch(k))."""
    return shapes.sample_clip(stream_generator(seed, stream_name(split), k, 0), world)


class _PromptText:
    """Prompt -> ((text_len, D) embedding, (text_len,) mask) by the pipeline's own tokenizer and text
    encoder, as synthesize's `_Text` runs them (prompt_clean first); cached by prompt (they repeat)."""

    def __init__(self, pipeline: Path, text_len: int, device):
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean  # what WanPipeline does to a prompt

        self._clean = prompt_clean
        self._enc = _EncoderEmbeds(pipeline, text_len, device)
        self.length = text_len
        world = self._enc.model.config.world_config()
        need = text_model.prompt_tokens(world)
        if text_len < need:  # the tokenizer would cut the longest prompts
            raise InputError(f"text_len {text_len} is shorter than this pipeline's longest prompt ({need} tokens, "
                             f"{world.max_objects} objects): it would cut prompts; use >= {need} (its own: "
                             f"{pipeline_text_len(pipeline) or WAN_TEXT_LEN})")
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        if prompt not in self._cache:
            self._cache[prompt] = _pad_text(self._enc(prompt, self._clean(prompt)), self.length)
        return self._cache[prompt]

    def null(self) -> torch.Tensor:
        """(l, D) the negative prompt's embedding, trimmed to its tokens (as synthesize stores it)."""
        return self._enc(NEGATIVE_PROMPT, self._clean(NEGATIVE_PROMPT))


def _encode_batch(vae: _Vae, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, F, H, W) in [-1, 1] -> (x0 (B, C, F', H', W'), image (B, C, 1, H', W') its first latent frame).
    The Wan VAE is causal in time: the first latent frame is the first frame encoded alone, which is how
    synthesize encodes a TI2V first frame (tests/shapes/test_shapes_pipeline.py checks the equality)."""
    x0 = vae.encode(video)
    return x0, x0[:, :, :1].clone()


def write_shapes_shards(out: str | Path, pipeline: str | Path, num_clips: int,
                        world: shapes.WorldConfig | None = None, split: str = "train", seed: int = 0,
                        shard_size: int = 256, batch_size: int = 16, text_len: int | None = None,
                        device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """Render `num_clips` Shapes clips of `split`'s stream, encode them with `pipeline`'s VAE and text
    encoder into LatentShardSource shards at `out` (atomically); return the index. `text_len`: the
    tokens stored per prompt (None: the pipeline's own text length, else 512)."""
    pipeline = Path(pipeline)
    check_pipeline(pipeline)
    if text_len is None:
        text_len = pipeline_text_len(pipeline) or WAN_TEXT_LEN
    for name, value in (("num_clips", num_clips), ("shard_size", shard_size), ("batch_size", batch_size),
                        ("text_len", text_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
    stream = stream_name(split)
    world = world or folder_world(pipeline, 9)
    vae = _Vae(pipeline / "vae", device, torch.float32)
    vae.check(world.num_frames, [(world.size, world.size)])
    prompt_text = _PromptText(pipeline, text_len, device)
    shards, videos = [], []
    t0 = time.perf_counter()
    bar = tqdm(total=num_clips, desc="shapes shards", unit="clip", disable=not progress)
    with atomic_dir(out) as tmp:
        for n, start in enumerate(range(0, num_clips, shard_size)):
            ks = list(range(start, min(start + shard_size, num_clips)))
            tensors, prompts = _shard(ks, seed, split, world, vae, prompt_text, batch_size, bar)
            name = SHARD_PATTERN.format(n)
            sha = _save_tensors_atomic(tmp / name, tensors)
            shards.append({"file": name, "num_samples": len(ks), "bucket": [world.size, world.size],
                           "x0_shape": list(tensors["x0"].shape[1:]), "sha256": sha})
            videos += [{"id": f"{split}-{k:06d}", "caption": c, "shard": name, "row": j}
                       for j, (k, c) in enumerate(zip(ks, prompts))]
        bar.close()
        index = {
            "format": "fastlight-latents/1",
            "shards": shards,
            "num_samples": num_clips,
            "videos": videos,
            "skipped": [],
            "vae": str(pipeline / "vae"),
            "vae_class": vae.name,
            "vae_fingerprint": vae_fingerprint(pipeline / "vae"),
            "num_frames": world.num_frames,
            "frame_stride": 1,
            "buckets": [[world.size, world.size]],
            "text": {"source": "encoder", "path": str(pipeline), "length": text_len},
            "shapes": {"made_by": "fastlight.shapes.latent_data.write_shapes_shards", "seed": seed, "split": split,
                       "stream": stream, "clip": "sample_clip(stream_generator(seed, stream, k, 0), world)",
                       "world": world.to_dict()},
        }
        index["null"] = save_null(tmp, prompt_text.null(), {})
        write_made(tmp, encode_s_per_clip=(time.perf_counter() - t0) / num_clips)
        atomic_write_json(tmp / INDEX_NAME, index)
    return index


def _shard(ks: list[int], seed: int, split: str, world, vae: _Vae, prompt_text: _PromptText, batch_size: int,
           bar) -> tuple[dict, list[str]]:
    """(the shard tensors of the clips `ks`, their prompts)."""
    xs, images, texts, masks, prompts = [], [], [], [], []
    for b in range(0, len(ks), batch_size):
        clip_list = [clip_at(seed, split, k, world) for k in ks[b:b + batch_size]]
        x0, image = _encode_batch(vae, shapes.render_batch(clip_list, world))
        xs.append(x0)
        images.append(image)
        for c in clip_list:
            t, m = prompt_text(c.prompt)
            texts.append(t)
            masks.append(m)
            prompts.append(c.prompt)
        bar.update(len(clip_list))
    return {"x0": torch.cat(xs), "text": torch.stack(texts), "text_mask": torch.stack(masks),
            "image": torch.cat(images)}, prompts


def main(argv: list[str] | None = None) -> int:
    """`python -m fastlight.shapes.latent_data OUT --pipeline FOLDER --num-clips N`: write the shards (the
    pipeline folder is built first, random transformer, when it does not exist)."""
    import argparse

    from fastlight.errors import FastlightError
    from fastlight.models.load import resolve_model_path
    from fastlight.shapes.pipeline_folder import write_shapes_pipeline

    p = argparse.ArgumentParser(prog="python -m fastlight.shapes.latent_data", description=main.__doc__)
    p.add_argument("out")
    p.add_argument("--pipeline", required=True,
                   help="a Shapes pipeline folder (built with a random transformer if absent) or a model preset "
                        "(shapes-pipeline: the shipped teacher's); the clips are of the world its text encoder records")
    p.add_argument("--world", default="v1", choices=("v1", "v2"), help="the world of a folder built here")
    p.add_argument("--num-clips", type=int, required=True)
    p.add_argument("--num-frames", type=int, default=9, help="1 + 4k frames (the VAE compresses time by 4)")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-len", type=int, default=None,
                   help="text tokens per prompt (default: the pipeline's own text length, 16 for a v1 Shapes folder)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        pipe = resolve_model_path(a.pipeline)  # a preset's folder (built on first use) or the path itself
        if not (pipe / "model_index.json").is_file():
            write_shapes_pipeline(pipe, world=a.world)
        index = write_shapes_shards(a.out, pipe, a.num_clips, folder_world(pipe, a.num_frames), a.split, a.seed,
                                    text_len=a.text_len)
    except FastlightError as e:
        p.exit(2, f"{p.prog}: error: {e}\n")
    made = json.loads((Path(a.out) / MADE_NAME).read_text())
    print(f"{index['num_samples']} clips in {len(index['shards'])} shard(s) at {a.out} "
          f"({made['encode_s_per_clip']:.3f} s per clip)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
