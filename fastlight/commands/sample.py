"""`fastlight sample --prompt TEXT`: generate a video."""
from __future__ import annotations

from fastlight.commands.options import add_sampler_args, sampler_overrides, whole_number


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="generate a video")
    s.add_argument("--model", default="shapes-teacher", help="model folder or 'shapes-teacher'")
    s.add_argument("--prompt", required=True)
    s.add_argument("--image", default=None, help="first frame PNG (default: drawn from the prompt with --seed)")
    add_sampler_args(s)
    s.add_argument("--seed", type=whole_number, default=0)
    s.add_argument("--out", default="clip.mp4", help=".mp4 (a .gif is written beside it)")
    s.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="onnx: run MODEL's transformer.onnx (from `fastlight export --format onnx`) with onnxruntime")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.sample import sample_video

    for p in sample_video(a.model, a.prompt, a.out, a.image, a.seed, sampler_overrides(a), backend=a.backend):
        print(p)
