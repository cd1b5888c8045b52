"""The pipeline side of `fastlight.evaluate.real`: prompts -> text embeddings, models -> latents,
latents -> uint8 frames, frames -> the teacher DiT's features. Each piece reuses what
`fastlight synthesize` does (`fastlight.data.synthesize`) so an evaluated sample is made exactly like
a synthesized one, for Wan and HunyuanVideo pipelines alike.

    texts = encode_prompts(pipeline, prompts, device, family="wan")  # the pipeline's own text encoder(s)
    z = sample_model(model, spec, texts, shape, seed, device)      # [(1, C, F', H', W')] one per prompt
    frames = decode_latents(vae, z)                                # [(F, H, W, 3) uint8]
    feats = teacher_features(teacher, z, texts, seed)              # (N, D) numpy

Noise: prompt i's initial noise is `stream_generator(seed, "test", i)` for every model (the same
noise for the teacher and each student: paired comparisons); a few-step student's re-noising draws
from `stream_generator(seed, "test/renoise", i)`, the features' noise from `"test/features"`.

HunyuanVideo, as synthesize makes its samples: each prompt's Llama embedding comes with its text mask
and CLIP pooled embedding, and a guidance-distilled transformer gets the embedded guidance (x 1000) of
every sample; all three travel in Cond.extra ("text_mask", "pooled", "guidance"), where the adapter
reads them. The null condition is the negative prompt "" encoded the same way (text and pooled: the
denoiser's `null_state`). Euler runs on the stock pipeline's grid (`hunyuan_levels`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from fastlight.data.latents import _Vae, pipeline_text_len, resize_crop
from fastlight.data.source import stream_generator
from fastlight.data.synthesize import _FirstFrames, _levels, _Text
from fastlight.data.video import to_uint8_frames
from fastlight.diffusion.sampling import euler_sample, sample
from fastlight.diffusion.spec import SamplerSpec, model_folder
from fastlight.errors import DataError
from fastlight.models.denoiser import Cond, Denoiser
from fastlight.models.load import load_denoiser

NOISE_STREAM = "test"
RENOISE_STREAM = "test/renoise"
FEATURE_STREAM = "test/features"
FEATURE_LEVEL = 0.5  # s of the noised sample the teacher's features are read at
MAX_TEXT_LEN = 512  # WanPipeline's max_sequence_length


@dataclass
class Texts:
    """Per-prompt text embeddings (N, L, D), their masks (N, L) and extras {name: (N, ...)} (HunyuanVideo:
    pooled, and guidance where the transformer embeds it; Wan: none), and the negative prompt's null
    state ({"null_text": (1, l, D)} + HunyuanVideo's "null_pooled" (1, P)), all on the CPU."""

    embeds: torch.Tensor
    masks: torch.Tensor
    extra: dict[str, torch.Tensor]
    null_state: dict[str, torch.Tensor]

    @property
    def null(self) -> torch.Tensor:
        """The negative prompt's text embedding (1, l, D)."""
        return self.null_state["null_text"]

    @property
    def width(self) -> int:
        return self.embeds.shape[-1]

    def cond(self, batch: Sequence[int], device, image: torch.Tensor | None = None) -> Cond:
        """The Cond of prompts `batch` as synthesize builds it: the text, and with extras (HunyuanVideo)
        Cond.extra = {extras, "text_mask"} (the mask beside them, where the adapter reads it)."""
        idx = list(batch)
        extra = None
        if self.extra:
            extra = {**{k: v[idx].to(device) for k, v in self.extra.items()}, "text_mask": self.masks[idx].to(device)}
        return Cond(self.embeds[idx].to(device), image, extra)


def encode_prompts(pipeline: Path, prompts: Sequence[str], device, max_text_len: int | None = None,
                   family: str = "wan", embedded_guidance: float | None = None) -> Texts:
    """Encode the prompts and the negative prompt "" with the pipeline's own text encoder(s), as the stock
    pipeline does (synthesize's `_Text`; Wan: prompt_clean, `max_text_len` tokens (default the pipeline
    folder's own text length, `latents.pipeline_text_len`, else MAX_TEXT_LEN), padding zeroed;
    HunyuanVideo: Llama in its template + its mask, CLIP pooled). `embedded_guidance` (HunyuanVideo's
    guidance-distilled transformer) is stored per prompt as extra["guidance"], x 1000 as synthesize does."""
    if max_text_len is None:
        max_text_len = pipeline_text_len(pipeline) or MAX_TEXT_LEN
    text = _Text(pipeline, family, None, max_text_len, device, len(prompts))
    rows = [text(i, p) for i, p in enumerate(prompts)]
    extra = {k: torch.stack([x[k] for _, _, x in rows]).float().cpu() for k in rows[0][2]}
    if embedded_guidance is not None:
        extra["guidance"] = torch.full((len(prompts),), embedded_guidance * 1000.0)
    null, null_extra = text.null()
    del text  # the encoders are not needed again: free them before the transformers load
    state = {"null_text": null.float().cpu(), **{f"null_{k}": v.float().cpu() for k, v in null_extra.items()}}
    return Texts(torch.stack([e for e, _, _ in rows]).float().cpu(), torch.stack([m for _, m, _ in rows]).float(),
                 extra, state)


def hunyuan_levels(pipeline: Path, spec: SamplerSpec) -> torch.Tensor | None:
    """The levels an Euler `spec` steps through on a HunyuanVideo pipeline, as HunyuanVideoPipeline does
    (synthesize's grid: its scheduler on linspace(1, 0, N + 1)[:-1]); None for a few-step spec (its own
    timesteps)."""
    return _levels(pipeline, "hunyuan", spec) if spec.kind == "euler" else None


def first_frames(vae_dir: Path, files: Sequence[Path] | None, height: int, width: int, device):
    """(latents [(C, 1, H', W')] as synthesize encodes them, images [(H, W, 3) uint8] as the videos
    see them), or (None, None) without first frames."""
    if files is None:
        return None, None
    enc = _FirstFrames(vae_dir, files, height, width, device)
    latents = [enc(i) for i in range(len(files))]
    images = []
    for f in files:
        with Image.open(f) as im:
            images.append(resize_crop(np.asarray(im.convert("RGB"))[None], height, width)[0])
    return latents, images


def load_model(model, pipeline_null, device) -> Denoiser:
    """A model entry (a Denoiser, used as it is, its null included; or a model folder) -> a Denoiser on
    `device`. A folder without its own null_text.safetensors (a pipeline's transformer/) gets the
    pipeline's negative prompt as its null condition, as the stock pipeline uses it: `pipeline_null` is
    a `Texts.null_state` dict (HunyuanVideo: text and pooled) or a bare (1, l, D) text embedding."""
    if isinstance(model, Denoiser):
        return model.to(device).eval()
    folder = model_folder(model) or Path(model)
    den = load_denoiser(folder, device)
    if not (folder / "null_text.safetensors").is_file():
        state = pipeline_null if isinstance(pipeline_null, dict) else {"null_text": pipeline_null}
        den.load_null_state({k: v.to(device) for k, v in state.items()})
    return den.eval()


def check_text_width(den: Denoiser, width: int, name: str) -> None:
    """The model's text projection must take this pipeline's embeddings (Wan: config.text_dim;
    HunyuanVideo: config.text_embed_dim)."""
    cfg = den.model.config
    dim = getattr(cfg, "text_dim", None) or getattr(cfg, "text_embed_dim", None)
    if dim is not None and dim != width:
        raise DataError(f"model {name!r} takes {dim}-wide text embeddings but the pipeline's text encoder gives "
                        f"{width}; evaluate a model of this pipeline's family (same text encoder)")


def _batches(n: int, batch_size: int) -> list[range]:
    return [range(b, min(n, b + batch_size)) for b in range(0, n, batch_size)]


def sample_model(den: Denoiser, spec: SamplerSpec, texts: Texts, shape, seed: int, device,
                 images: Sequence[torch.Tensor] | None = None, bar: tqdm | None = None,
                 batch_size: int = 1, levels: torch.Tensor | None = None) -> list[torch.Tensor]:
    """One latent (1, C, F', H', W') float32 on CPU per prompt, from prompt i's noise of the test stream,
    `batch_size` prompts at a time. A few-step sampler's re-noising of prompt i draws from prompt i's
    `test/renoise` stream, so no sample depends on the batching (but for float rounding).
    `levels`: an Euler spec's grid when it is not the spec's own (HunyuanVideo's, `hunyuan_levels`)."""
    out = []
    for batch in _batches(texts.embeds.shape[0], batch_size):
        noise = torch.stack([torch.randn(shape, generator=stream_generator(seed, NOISE_STREAM, i)) for i in batch])
        image = None if images is None else torch.stack([images[i] for i in batch]).to(device)
        cond = texts.cond(batch, device, image)
        if levels is not None and spec.kind == "euler":
            x0 = euler_sample(den, noise.to(device), cond, levels, spec.guidance)
        else:
            renoise = [stream_generator(seed, RENOISE_STREAM, i) for i in batch]  # one stream per prompt
            x0 = sample(den, noise.to(device), cond, spec, generator=renoise)
        out.extend(x0.float().cpu().split(1))
        if bar is not None:
            bar.update(len(batch))
    return out


@torch.no_grad()
def decode_latents(vae: _Vae, latents: Sequence[torch.Tensor], batch_size: int = 1) -> list[np.ndarray]:
    """Normalised latents -> (F, H, W, 3) uint8 frames, as the stock pipelines decode: Wan
    z * latents_std + latents_mean, HunyuanVideo z / scaling_factor; VAE decode; [-1, 1] -> uint8."""
    frames = []
    for batch in _batches(len(latents), batch_size):
        z = torch.cat([latents[i] for i in batch]).float()
        z = z / vae.scale if vae.scale is not None else z / vae.inv_std + vae.mean
        video = vae.vae.decode(z.to(vae.device, vae.dtype), return_dict=False)[0]  # (B, 3, F, H, W)
        frames.extend(to_uint8_frames(v) for v in video.float().cpu())
    return frames


@torch.no_grad()
def teacher_features(teacher: Denoiser, latents: Sequence[torch.Tensor], texts: Texts, seed: int,
                     block: int | None = None, level: float = FEATURE_LEVEL, batch_size: int = 1) -> np.ndarray:
    """(N, D) features of the samples in the teacher DiT's own space: sample i's normalised VAE latent
    (1, C, F', H', W') (what the VAE decodes into its video) is noised to s = `level` with prompt i's
    `test/features` noise (the same for every model), run through the teacher with its prompt's text,
    and the hidden state after block `block` (default: the middle one; HunyuanVideo's blocks are its
    double-stream then single-stream ones, and its captured state is the video tokens) is mean-pooled
    over tokens."""
    block = teacher.num_blocks // 2 if block is None else block
    device = next(teacher.parameters()).device
    feats = []
    for batch in _batches(len(latents), batch_size):
        z = torch.cat([latents[i] for i in batch]).float()
        eps = torch.stack([torch.randn(z.shape[1:], generator=stream_generator(seed, FEATURE_STREAM, i))
                           for i in batch])
        x_t = ((1 - level) * z + level * eps).to(device)
        cond = texts.cond(batch, device)
        _, hidden = teacher(x_t, torch.full((len(batch),), level), cond, capture=[block])
        feats.append(hidden[block].float().mean(dim=1).cpu().numpy())  # (B, D)
    return np.concatenate(feats).astype(np.float64)
