"""The data contract: every recipe takes its batches from the source its config's `data:` names.

    source = build_source({"_component_": "shapes", "batch_size": 16}, seed=0)
    b = source.batch(step, rank, num_processes)
    # b["x0"]        (B, C, F, H, W) float32 clean latents (B = batch_size / num_processes)
    # b["text"]      (B, L, D) text embeddings, as the transformer's cross-attention reads them
    # b["text_mask"] (B, L) 1 = a real token, 0 = padding
    # b["image"]     (B, C, 1, H, W) clean first-frame latent (Wan 2.2 TI2V), only for image sources
    # b["extra"]     {name: (B, ...)} architecture-specific conditioning (HunyuanVideo's pooled CLIP), optional
    # b["prompts"]   [str] * B, optional: the captions, for logs and probes (never fed to the model)

A source is a pure function of (its seed, its stream, step, rank, num_processes): the same call
always gives the same batch, so an interrupted run resumes exactly and N processes see disjoint
shards of one global batch. Sources draw their randomness from `stream_generator`, whose streams
(`train`, `calibration`, `validation`, `test`, ...) are disjoint namespaces of one seed.
Recipes draw their own randomness (noise, noise levels, skip sets) from other streams.

Registered sources (entry points, fastlight/plugins.py): `latents` (shards written by
`fastlight preprocess`), `shapes` (the embedded world). `_component_` may also be
`package.module:Class` for a user's own source.
"""
from __future__ import annotations

import hashlib
from typing import Any, Protocol, runtime_checkable

import torch

from fastlight.errors import DataError
from fastlight.plugins import component


@runtime_checkable
class DataSource(Protocol):
    batch_size: int  # global: each of N processes gets batch_size / N

    def batch(self, step: int, rank: int = 0, num_processes: int = 1) -> dict[str, Any]: ...


def stream_seed(seed: int, stream: str, step: int, rank: int = 0) -> int:
    """A 63-bit seed for (seed, stream, step, rank); different streams never share a seed
    (sha256 of the tuple), so a calibration or evaluation stream cannot replay training data."""
    key = f"fastlight/{stream}/{int(seed)}/{int(step)}/{int(rank)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def stream_generator(seed: int, stream: str, step: int, rank: int = 0) -> torch.Generator:
    """A CPU torch.Generator seeded by `stream_seed`."""
    return torch.Generator().manual_seed(stream_seed(seed, stream, step, rank))


def local_batch_size(batch_size: int, num_processes: int) -> int:
    """The per-process share of a global batch (one-line error when it does not divide)."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size % num_processes:
        raise DataError(f"batch_size {batch_size} does not divide across {num_processes} processes; "
                        f"use a multiple of {num_processes}")
    return batch_size // num_processes


def build_source(spec: dict | str, **defaults) -> DataSource:
    """A `data:` config value -> a source. `spec`: a registered name, or a mapping with
    `_component_` (name or `module:Class`) and the source's keyword arguments; `defaults` fill
    arguments the mapping does not set (e.g. the recipe's seed and batch_size), where the source
    accepts them."""
    if isinstance(spec, str):
        spec = {"_component_": spec}
    if not isinstance(spec, dict) or "_component_" not in spec:
        raise DataError(f"data: must name a source, e.g. data: {{_component_: latents, path: SHARDS}}; got {spec!r}")
    kwargs = dict(spec)
    cls = component("fastlight.data", kwargs.pop("_component_"))
    accepted = getattr(cls, "__dataclass_fields__", None)
    for k, v in defaults.items():
        if k not in kwargs and (accepted is None or k in accepted):
            kwargs[k] = v
    if accepted is not None:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise DataError(f"data source {cls.__name__} has no option {unknown[0]!r}; "
                            f"known: {', '.join(sorted(accepted))}")
    return cls(**kwargs)
