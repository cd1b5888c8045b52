"""`fastlight pretrain config.yaml [key=value ...]`: train a denoiser from random weights."""
from __future__ import annotations


def add_parser(sub) -> None:
    s = sub.add_parser("pretrain", help="train a denoiser from random weights (the embedded Shapes teacher)")
    s.add_argument("config", help="YAML recipe, e.g. configs/shapes/pretrain.yaml")
    s.add_argument("overrides", nargs="*", help="key=value overrides")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.train.entry import train_from_config

    out = train_from_config("pretrain", a.config, a.overrides)
    print(f"model written to {out}")
