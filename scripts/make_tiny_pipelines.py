"""Write the tiny random-weight diffusers pipelines (fastlight/models/tiny_pipelines.py) offline.

    python scripts/make_tiny_pipelines.py OUT_DIR [--kinds wan21-t2v wan22-ti2v hunyuan-t2v] [--seed 0]

writes OUT_DIR/<kind>/ for each kind: a complete pipeline folder the stock diffusers class loads.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastlight.errors import FastlightError
from fastlight.models.tiny_pipelines import KINDS, write_tiny_pipeline


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write tiny random-weight diffusers pipelines (no download)")
    p.add_argument("out_dir")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        for kind in a.kinds:
            print(write_tiny_pipeline(kind, Path(a.out_dir) / kind, seed=a.seed))
    except FastlightError as e:
        print(f"make_tiny_pipelines: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
