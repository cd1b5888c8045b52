"""`fastlight preprocess VIDEOS --captions ... --vae ... --out ...`: real videos -> latent shards."""
from __future__ import annotations


def add_parser(sub) -> None:
    s = sub.add_parser("preprocess", help="real videos -> VAE latents + text embeddings in safetensors shards")
    s.add_argument("videos_dir")
    s.add_argument("--captions", required=True, help="captions.jsonl: {\"video\": ..., \"caption\": ...} per line")
    s.add_argument("--vae", required=True, help="diffusers AutoencoderKLWan folder (or a pipeline folder with vae/)")
    s.add_argument("--out", required=True)
    s.add_argument("--num-frames", type=int, default=81)
    s.add_argument("--height", type=int, default=None)
    s.add_argument("--width", type=int, default=None)
    s.add_argument("--text-embeds", default=None, help="safetensors of precomputed (L, D) embeddings keyed by video id")
    s.add_argument("--text-encoder", default=None, help="a transformers T5/UMT5 folder to encode the captions")
    s.add_argument("--shard-size", type=int, default=64)
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.data.latents import preprocess_command

    rc = preprocess_command(a.videos_dir, a.captions, a.vae, a.out, a.num_frames, a.height, a.width, a.text_embeds,
                            a.text_encoder, a.shard_size)
    if rc:
        raise SystemExit(rc)
