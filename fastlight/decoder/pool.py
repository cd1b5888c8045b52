"""The latents a light decoder is distilled on, sampled from the model whose latents it will decode.

    file = student_pool(STUDENT_DIR, data_spec, SamplerSpec.from_json(...), 256, OUT / "student_latents.safetensors")
    # -> distill-decoder latents=FILE (a safetensors file whose `latents` are normalised (N, C, T, h, w))

Why: the light decoder replaces the full one behind the *student*, so the latents it must reproduce the full
decoder on are the student's 4-step samples, not the encoded training clips of the data shards (the student's
latents sit off the encoder's manifold in ways a decoder fitted to 256 encoded clips never saw). The conditions
(text embedding, TI2V first-frame latent) are drawn from the run's own data source on its own stream
(`decoder`), the noise from `seed`: the training stream's prompts, never an evaluation case.

The file is written atomically beside a sidecar (`<file>.json`: student folder, number, seed, sampler) and
reused when the sidecar matches; otherwise sampled again.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from fastlight.data.source import build_source
from fastlight.diffusion.sampling import sample
from fastlight.diffusion.spec import SamplerSpec
from fastlight.fileio import atomic_path, atomic_write_json
from fastlight.models.load import load_denoiser
from fastlight.train.batches import batch_cond

STREAM = "decoder"  # the data source's stream the pool's conditions come from
BATCH = 16


def pool_record(student: Path, num: int, seed: int, spec: SamplerSpec) -> dict:
    return {"student": str(Path(student).resolve()), "num": int(num), "seed": int(seed), "sampler": spec.to_json()}


def student_pool(student: Path, data: dict, spec: SamplerSpec, num: int, out: Path, seed: int = 0,
                 progress: bool = True) -> Path:
    """`num` normalised latents (num, C, T, h, w) sampled by `student` (a model folder) with `spec` on conditions
    of the data source `data` (stream `decoder`, seed `seed`); written to `out` (safetensors, key `latents`)."""
    out = Path(out)
    sidecar = out.with_name(out.name + ".json")
    want = json.loads(json.dumps(pool_record(student, num, seed, spec)))
    if out.is_file() and sidecar.is_file() and json.loads(sidecar.read_text()) == want:
        return out
    source = build_source(data, seed=seed, batch_size=BATCH, stream=STREAM)
    model = load_denoiser(student).eval()
    gen = torch.Generator().manual_seed(seed)
    chunks, have = [], 0
    bar = tqdm(total=num, desc="decoder pool: student samples", disable=not progress, unit="latent")
    step = 0
    while have < num:
        b = source.batch(step)
        take = min(num - have, b["x0"].shape[0])
        part = {k: b[k][:take].float() for k in ("text", "image") if b.get(k) is not None}
        if b.get("extra") is not None:  # HunyuanVideo's pooled text and mask
            part["extra"] = {k: v[:take] for k, v in b["extra"].items()}
        cond = batch_cond(part, "cpu")
        noise = torch.randn((take, *b["x0"].shape[1:]), generator=gen)  # (B, C, T, h, w)
        chunks.append(sample(model, noise, cond, spec, generator=gen).float())
        have += take
        step += 1
        bar.update(take)
    bar.close()
    with atomic_path(out) as tmp:
        save_file({"latents": torch.cat(chunks).contiguous()}, str(tmp))
    atomic_write_json(sidecar, want)
    return out
