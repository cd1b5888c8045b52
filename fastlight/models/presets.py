"""The tiny real pipelines as model presets: `teacher: tiny-wan21-t2v` in a recipe needs no build step.

    folder = resolve_model_path("tiny-wan22-ti2v")   # built into the cache on first use, then reused

Presets (entry points in pyproject's `fastlight.models` group, like `shapes-teacher`):
`tiny-wan21-t2v`, `tiny-wan22-ti2v`, `tiny-hunyuan-t2v`, each `write_tiny_pipeline(kind)`
(fastlight/models/tiny_pipelines.py) written once into `$FASTLIGHT_CACHE/tiny_pipelines/KIND-TAG`
(default cache: ~/.cache/fastlight). TAG is a hash of the builder's source and the diffusers and
transformers versions, so a changed builder or library gets a fresh folder instead of a stale one.
The folder is written atomically (`atomic_dir`): a process that dies mid-build leaves no
half-written pipeline, and two processes building at once both end with a complete one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fastlight.models import tiny_pipelines
from fastlight.models.tiny_pipelines import write_tiny_pipeline

CACHE_ENV = "FASTLIGHT_CACHE"


def cache_dir() -> Path:
    """$FASTLIGHT_CACHE, else ~/.cache/fastlight."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fastlight"


def _builder_tag() -> str:
    """A short hash of what decides the tiny pipelines' bytes: the builder's source, diffusers, transformers."""
    import diffusers
    import transformers

    h = hashlib.sha256(Path(tiny_pipelines.__file__).read_bytes())
    h.update(f"{diffusers.__version__}/{transformers.__version__}".encode())
    return h.hexdigest()[:10]


def tiny_pipeline_dir(kind: str) -> Path:
    """The cached tiny pipeline of `kind` (tiny_pipelines.KINDS), built on first use."""
    folder = cache_dir() / "tiny_pipelines" / f"{kind}-{_builder_tag()}"
    if not (folder / "model_index.json").is_file():
        write_tiny_pipeline(kind, folder)
    return folder


def tiny_wan21_t2v() -> Path:
    """The `tiny-wan21-t2v` preset: a tiny random-weight WanPipeline (Wan 2.1 T2V layout)."""
    return tiny_pipeline_dir("wan21-t2v")


def tiny_wan22_ti2v() -> Path:
    """The `tiny-wan22-ti2v` preset: a tiny random-weight Wan 2.2 TI2V WanPipeline (expand_timesteps)."""
    return tiny_pipeline_dir("wan22-ti2v")


def tiny_hunyuan_t2v() -> Path:
    """The `tiny-hunyuan-t2v` preset: a tiny random-weight HunyuanVideoPipeline."""
    return tiny_pipeline_dir("hunyuan-t2v")
