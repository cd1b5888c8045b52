"""The denoiser contract: the only view of a video DiT that algorithms get.

Every algorithm (analysis, pruning, training, distillation, sampling, evaluation)
talks to a `Denoiser`; only `fastlight/models/` knows architectures.

    v = denoiser(x_t, s, cond, skip={3, 7})            # velocity, (B, C, F, H, W)
    v, hidden = denoiser(x_t, s, cond, capture=[2, 5])  # + hidden states after blocks 2 and 5

Conventions (rectified flow, as in Wan; DESIGN.md section 1):
  x_t = (1 - s) * x0 + s * eps, s in [0, 1], timestep = 1000 * s, v = eps - x0.
Skipping a block runs the model with a filtered block list: the block is simply not
called (identity on its input); there is no wrapper module and no per-block overhead.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from fastlight.errors import ModelError


@dataclass(frozen=True)
class BlockInfo:
    """One prunable block: its id in the forward's `skip`, its kind and its size."""

    index: int  # global id, 0..num_blocks-1, in execution order
    kind: str  # "wan" | "double" | "single"
    kind_index: int  # index within its kind (e.g. single_transformer_blocks[kind_index])
    num_params: int


@dataclass
class Cond:
    """Conditioning of a batch.

    text:  (B, L, D) text embeddings (already encoded; the model projects them).
    image: (B, C, 1, H, W) clean first-frame latent for text+image-to-video in the Wan 2.2
           TI2V way (kept clean, its tokens get timestep 0), or None for text-to-video.
    extra: architecture-specific tensors (e.g. HunyuanVideo's pooled CLIP projection and
           text mask), batch-first; algorithms treat them as opaque.
    """

    text: torch.Tensor
    image: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] | None = None

    @property
    def batch_size(self) -> int:
        return self.text.shape[0]

    def cat(self, other: "Cond") -> "Cond":
        """Batch-concatenate two conditions (cond and uncond in one forward for CFG)."""
        image = None if self.image is None else torch.cat([self.image, other.image])
        extra = None if self.extra is None else {k: torch.cat([v, other.extra[k]]) for k, v in self.extra.items()}
        return Cond(torch.cat([self.text, other.text]), image, extra)

    def index(self, idx) -> "Cond":
        image = None if self.image is None else self.image[idx]
        extra = None if self.extra is None else {k: v[idx] for k, v in self.extra.items()}
        return Cond(self.text[idx], image, extra)

    def to(self, *args, **kwargs) -> "Cond":
        image = None if self.image is None else self.image.to(*args, **kwargs)
        extra = None if self.extra is None else {k: v.to(*args, **kwargs) for k, v in self.extra.items()}
        return Cond(self.text.to(*args, **kwargs), image, extra)


class Denoiser(nn.Module):
    """Base class of the architecture adapters (`wan.WanDenoiser`, `hunyuan.HunyuanDenoiser`).

    Subclasses set `self.model` (the stock diffusers module) and implement `_forward`,
    `block_infos`, `null_text`.
    """

    model: nn.Module
    family: str = "?"

    # ---- what algorithms may use -------------------------------------------------------
    @property
    def blocks(self) -> list[BlockInfo]:
        return self.block_infos()

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def num_params(self, skip: Iterable[int] = ()) -> int:
        """Parameters of the DiT with the `skip` blocks removed."""
        skip = set(skip)
        total = sum(p.numel() for p in self.model.parameters())
        return total - sum(b.num_params for b in self.blocks if b.index in skip)

    def forward(
        self,
        x_t: torch.Tensor,
        s: torch.Tensor,
        cond: Cond,
        skip: Iterable[int] = (),
        capture: Iterable[int] | None = None,
    ):
        """Velocity v = eps - x0 at noise level s. x_t: (B, C, F, H, W); s: (B,) or scalar.

        With `capture`, returns (v, {block_id: hidden (B, N, D) after that block}).
        """
        skip = self._skip_set(skip)
        s = self._s_per_sample(s, x_t)
        capture_set = None if capture is None else frozenset(capture)
        v, hidden = self._forward(x_t, s, cond, skip, capture_set)
        return v if capture is None else (v, hidden)

    def null_cond(self, cond: Cond) -> Cond:
        """The unconditional (null-text) version of `cond`: same image, null text."""
        B, L = cond.text.shape[:2]
        null = self.null_text.to(cond.text)
        if null.shape[1] < L:  # Wan pads text embeddings with zero tokens to a fixed length
            null = torch.cat([null, null.new_zeros(1, L - null.shape[1], null.shape[2])], dim=1)
        text = null[:, :L].expand(B, L, null.shape[2])
        extra = None
        if cond.extra is not None:
            extra = {k: self.null_extra(k, v) for k, v in cond.extra.items()}
        return replace(cond, text=text, extra=extra)

    def null_extra(self, key: str, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(value)

    def null_state(self) -> dict[str, torch.Tensor]:
        """The null (unconditional) condition as tensors: {"null_text": (1, L0, D)} plus what an
        adapter adds (HunyuanVideo: "null_pooled"); what `save` writes to null_text.safetensors."""
        return {"null_text": self.null_text}

    def load_null_state(self, state: dict[str, torch.Tensor]) -> None:
        """Set the null condition from `null_state()`-style tensors (keys it does not know are ignored)."""
        null = state["null_text"]
        self.null_text = null.reshape(1, -1, null.shape[-1]).float().to(self.null_text.device)

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path, fastlight_meta: dict | None = None) -> None:
        """Save as a diffusers model folder (config.json + safetensors), plus fastlight.json."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.null_state().items()}, str(path / "null_text.safetensors"))
        meta = dict(self.meta)
        meta.update(fastlight_meta or {})
        meta["family"] = self.family
        from fastlight.fileio import atomic_write_json

        atomic_write_json(path / "fastlight.json", meta)

    # set by subclasses
    null_text: torch.Tensor
    meta: dict

    def forward_shared(self, x_t: torch.Tensor, s: torch.Tensor, cond: Cond,
                       skips: Sequence[Iterable[int]]) -> list[torch.Tensor]:
        """One velocity per skip set, as `[self(x_t, s, cond, skip=k) for k in skips]`, but the
        embeddings and every block before the first block on which the skip sets disagree run
        once (same weights, same inputs => same hidden state): FastLightGen's pruned and unpruned
        teacher evaluations share that prefix."""
        skips = [self._skip_set(k) for k in skips]
        s = self._s_per_sample(s, x_t)
        n, split = self.num_blocks, self.shared_prefix_blocks(skips)
        st = self._embed(x_t, s, cond)
        for i in range(split):
            if i not in skips[0]:
                st = self._block(i, st)
        outs = []
        for k in skips:
            branch = st
            for i in range(split, n):
                if i not in k:
                    branch = self._block(i, branch)
            outs.append(self._head(branch))
        return outs

    def _skip_set(self, skip: Iterable[int]) -> frozenset:
        skip = frozenset(skip)
        bad = [i for i in skip if not 0 <= i < self.num_blocks]
        if bad:
            raise ModelError(f"skip ids {sorted(bad)} out of range: this model has blocks 0..{self.num_blocks - 1}")
        return skip

    @staticmethod
    def _s_per_sample(s, x_t: torch.Tensor) -> torch.Tensor:
        """s as float32 (B,) on x_t's device (a scalar is broadcast)."""
        s = torch.as_tensor(s, dtype=torch.float32, device=x_t.device)
        return s.expand(x_t.shape[0]) if s.ndim == 0 else s

    def shared_prefix_blocks(self, skips: Sequence[Iterable[int]]) -> int:
        """How many leading block positions `forward_shared(skips)` evaluates once for all sets."""
        skips = [frozenset(k) for k in skips]
        return next((i for i in range(self.num_blocks) if len({i in k for k in skips}) > 1), self.num_blocks)

    def _forward(self, x_t, s, cond, skip, capture):
        """embed -> blocks not in `skip` (hidden states captured after the `capture` ones) -> head."""
        st = self._embed(x_t, s, cond)
        captured = {}
        for i in range(self.num_blocks):
            if i in skip:
                continue
            st = self._block(i, st)
            if capture is not None and i in capture:
                captured[i] = st["hidden"]
        return self._head(st), captured

    # the three pieces each adapter implements
    def _embed(self, x_t, s, cond) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _block(self, i: int, st: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _head(self, st: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_infos(self) -> list[BlockInfo]:  # pragma: no cover - abstract
        raise NotImplementedError
