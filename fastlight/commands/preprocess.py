"""`fastlight preprocess VIDEOS --captions ... --vae ... --out ...`: real videos -> latent shards."""
from __future__ import annotations

from pathlib import Path

from fastlight.commands.options import output_folder, whole_number


def add_parser(sub) -> None:
    s = sub.add_parser("preprocess", help="real videos -> VAE latents + text embeddings in safetensors shards")
    s.add_argument("videos_dir")
    s.add_argument("--captions", required=True, help="captions.jsonl: {\"video\": ..., \"caption\": ...} per line")
    s.add_argument("--vae", required=True, help="diffusers AutoencoderKLWan / AutoencoderKLHunyuanVideo folder (or a "
                                                "pipeline folder with vae/); its fingerprint goes into the index")
    s.add_argument("--out", type=output_folder, required=True)
    s.add_argument("--num-frames", type=whole_number, default=81)
    s.add_argument("--height", type=whole_number, default=None)
    s.add_argument("--width", type=whole_number, default=None)
    s.add_argument("--text-embeds", default=None, help="safetensors of precomputed (L, D) embeddings keyed by video id")
    s.add_argument("--text-encoder", default=None,
                   help="a transformers T5/UMT5 folder, or the pipeline folder (Wan: T5; HunyuanVideo: Llama + "
                        "CLIP), to encode the captions; the pipeline's null (negative prompt) is stored beside the shards")
    s.add_argument("--shard-size", type=whole_number, default=64)
    s.set_defaults(fn=run)


def run(a) -> None:
    rc = preprocess_command(a.videos_dir, a.captions, a.vae, a.out, a.num_frames, a.height, a.width, a.text_embeds,
                            a.text_encoder, a.shard_size)
    if rc:
        raise SystemExit(rc)


def preprocess_command(videos_dir, captions, vae, out, num_frames: int = 81, height: int | None = None,
                       width: int | None = None, text_embeds=None, text_encoder=None, shard_size: int = 64) -> int:
    """The verb `fastlight preprocess VIDEOS_DIR --captions C --vae V --out SHARDS [...]` -> exit code.

    height and width (both or neither) give one bucket; otherwise DEFAULT_BUCKETS (480x832, 832x480,
    480x480). Errors are DataError with a one-line message (the CLI prints it and exits 2).
    """
    from fastlight.data.latents import DEFAULT_BUCKETS, INDEX_NAME, DataError, preprocess

    if (height is None) != (width is None):
        raise DataError("pass both --height and --width (one bucket), or neither (the default buckets)")
    buckets = DEFAULT_BUCKETS if height is None else [(int(height), int(width))]
    index = preprocess(videos_dir, captions, vae, out, num_frames=int(num_frames), buckets=buckets,
                       text_embeds=text_embeds, text_encoder=text_encoder, shard_size=int(shard_size))
    print(f"wrote {Path(out) / INDEX_NAME}: {index['num_samples']} samples, {len(index['shards'])} shard(s), "
          f"{len(index['skipped'])} skipped")
    return 0 if index["num_samples"] > 0 else 1
