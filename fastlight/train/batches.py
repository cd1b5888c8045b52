"""What every flow-matching recipe shares: its config fields, its data source and its own randomness.

    source = recipe_source(cfg, model)              # the source cfg.data names (fastlight/data/source.py)
    b = flow_batch(source, model, cfg, "dpp", index, rank, num_processes)
    # b: {x0, text, image?, extra?, eps, s} on the CPU, plus b["gens"] (one generator per sample)
    # and b["batch_gen"] (one for the batch) for the recipe's own further draws
    cond = batch_cond(b, device)                    # Cond(text, image or None, extra)

The source gives clean latents and conditions; the recipe draws the CFG dropout (a sample's text
replaced by the model's null text, `Denoiser.null_cond`, with probability cfg.cfg_dropout), the
noise `eps` and the noise level `s` (u ~ U(0, 1), shifted by cfg.shift) of each sample from that
sample's own generator, `stream_generator(cfg.seed, stream, index, row)` with `row` its place in
the global batch (b["gens"], for the recipe's further per-sample draws), and draws shared by the
whole batch from `stream_generator(cfg.seed, stream + "/batch", index)` (b["batch_gen"]). So the
same (seed, index) gives the same global batch however it is split over processes (N processes
train like one), and a recipe's streams never meet a source's. The null text is the model's own; a
model with none (straight from a pipeline folder: one zero token) takes the source's `null_text` /
`null_extra` (latent shards record the negative prompt's embedding the pipeline uses) in `recipe_source`. A source that gives `image` makes
the run text+image-to-video (frame 0 is the clean condition); without it the run is text-to-video.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastlight.data.source import DataSource, build_source, stream_generator
from fastlight.diffusion.flow import sample_s
from fastlight.errors import DataError
from fastlight.models.denoiser import Cond, Denoiser
from fastlight.train.loop import LoopConfig


def shapes_data() -> dict:
    return {"_component_": "shapes"}


@dataclass
class RecipeConfig(LoopConfig):
    """The fields every training recipe shares (flat, like every config)."""

    teacher: str = "shapes-teacher"
    data: dict = field(default_factory=shapes_data)  # the data source (fastlight/data/source.py), its options
    batch_size: int = 16  # global: each of N processes gets batch_size / N
    shift: float = 3.0
    cfg_dropout: float = 0.1
    threads: int = 2


def recipe_source(cfg: RecipeConfig, model: Denoiser) -> DataSource:
    """The source cfg.data names, with the run's seed and batch size; a model that records the
    data shape it was trained on (its fastlight.json `world`) passes it as the source's defaults.
    A model with no null text of its own (a transformer straight from a pipeline folder) takes the
    source's (`adopt_null`), so CFG dropout trains against the null the pipeline uses; call this
    before copying the model into a student, so the copies carry it too."""
    source = build_source(cfg.data, seed=cfg.seed, batch_size=cfg.batch_size, **model.meta.get("world", {}))
    adopt_null(model, source)
    return source


def has_default_null(model: Denoiser) -> bool:
    """Whether the model's null condition is the adapters' default: one zero text token (and zero extras)."""
    state = model.null_state()
    return state["null_text"].shape[1] == 1 and not any(bool(v.any()) for v in state.values())


def adopt_null(model: Denoiser, source: DataSource) -> bool:
    """Give `model` the source's null condition (`source.null_text` (1, L0, D), `source.null_extra`
    {name: (1, ...)}: the negative prompt's embedding the shards record) when the model has the
    default null; one line says so. Returns whether it did."""
    null = getattr(source, "null_text", None)
    if null is None or not has_default_null(model):
        return False
    where, width = getattr(source, "path", type(source).__name__), model.null_text.shape[-1]
    if null.shape[-1] != width:
        raise DataError(f"the data's null text ({where}) is {null.shape[-1]} "
                        f"wide but the model reads {width}-wide text: the shards were made for another model; "
                        "re-make them with this model's pipeline (check_shards_match names the difference)")
    extra = getattr(source, "null_extra", None) or {}
    model.load_null_state({"null_text": null, **{f"null_{k}": v for k, v in extra.items()}})
    print(f"null text: the model has none of its own; using the data's ({where}: the negative prompt's embedding, "
          f"{null.shape[1]} token(s){', ' + ', '.join(sorted(extra)) if extra else ''})")
    return True


def drop_text(model: Denoiser, text: torch.Tensor, extra: dict | None, drop: torch.Tensor):
    """CFG dropout: rows where `drop` (B,) is True get the model's null text (and null extra)."""
    if not bool(drop.any()):
        return text, extra
    null = model.null_cond(Cond(text, None, extra))
    rows = drop.view(-1, 1, 1)
    text = torch.where(rows, null.text.to(text.dtype), text)
    if extra is not None:
        extra = {k: torch.where(drop.view(-1, *[1] * (v.ndim - 1)), null.extra[k].to(v.dtype), v)
                 for k, v in extra.items()}
    return text, extra


def sample_generators(seed: int, stream: str, index: int, rank: int, n: int) -> list[torch.Generator]:
    """One generator per sample of this process's share (rows rank * n .. rank * n + n - 1 of the global batch)."""
    return [stream_generator(seed, stream, index, rank * n + j) for j in range(n)]


def per_sample(gens: list[torch.Generator], draw) -> torch.Tensor:
    """torch.stack([draw(g) for g in gens]): one draw per sample, each from its own generator."""
    return torch.stack([draw(g) for g in gens])


def flow_batch(source: DataSource, model: Denoiser, cfg: RecipeConfig, stream: str, index: int, rank: int = 0,
               num_processes: int = 1) -> dict:
    """One micro-batch of the source plus the recipe's per-sample draws (CFG dropout, eps, s, in that
    order, from each sample's generator); b["gens"] and b["batch_gen"] for the recipe's further draws."""
    b = source.batch(index, rank, num_processes)
    x0 = b["x0"].float()
    n = x0.shape[0]
    gens = sample_generators(cfg.seed, stream, index, rank, n)
    drop = per_sample(gens, lambda g: torch.rand((), generator=g)) < cfg.cfg_dropout
    text, extra = drop_text(model, b["text"].float(), b.get("extra"), drop)
    eps = per_sample(gens, lambda g: torch.randn(x0.shape[1:], generator=g))
    s = per_sample(gens, lambda g: sample_s(1, cfg.shift, g)[0])
    out = {"x0": x0, "text": text, "eps": eps, "s": s, "gens": gens,
           "batch_gen": stream_generator(cfg.seed, f"{stream}/batch", index)}
    if b.get("image") is not None:
        out["image"] = b["image"].float()
    if extra is not None:
        out["extra"] = extra
    return out


def batch_cond(batch: dict, device) -> Cond:
    """The Cond of a batch on `device`: text, the clean first-frame image (TI2V) or None (T2V), extra."""
    image = batch.get("image")
    extra = batch.get("extra")
    return Cond(batch["text"].to(device), None if image is None else image.to(device),
                None if extra is None else {k: v.to(device) for k, v in extra.items()})
