"""`fastlight info MODEL`: blocks, parameters and config of a model."""
from __future__ import annotations


def add_parser(sub) -> None:
    s = sub.add_parser("info", help="blocks, parameters and config of a model")
    s.add_argument("path", help="model folder or preset name (e.g. shapes-teacher)")
    s.set_defaults(fn=run)


def run(a) -> None:
    from fastlight.info import model_info, print_info

    print_info(model_info(a.path))
