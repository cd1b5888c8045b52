"""pretrain — train a denoiser from random weights with flow matching (rectified flow, as in Wan).

    L = E || v_theta(x_t, s, c) - (eps - x0) ||^2,    x_t = (1 - s) x0 + s eps

over the generated frames (frame 0 is excluded when the source gives the clean first frame as the
TI2V image condition). The text is replaced by the model's null text with probability
`cfg_dropout` (CFG dropout), so the model also learns the unconditional velocity. Batches come from
the source `data:` names; eps, s and the dropout from the recipe's own stream (train/batches.py).

The architecture is a diffusers model folder's config.json (`model`: a folder or a preset such as
`shapes-teacher`; its weights are not read), with `num_layers` (> 0) overriding the depth. The
output folder is the EMA (or the model) as a stock diffusers folder; its fastlight.json holds `meta`
(e.g. the data shape a plug-in's tools read: `world`), the run's config, the model config and the
logged loss curve. Probes (e.g. the Shapes plug-in's prompt sensitivity) are logging hooks:
`hooks: [{_component_: shapes-probe, every: 100}]` (entry point group `fastlight.hooks`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fastlight.fileio import read_json_object, read_safetensors
from fastlight.diffusion.flow import add_noise, v_target
from fastlight.models.denoiser import Denoiser, ModelError
from fastlight.models.load import ADAPTERS, resolve_model_path
from fastlight.train.batches import RecipeConfig, batch_cond, flow_batch, recipe_source


@dataclass
class PretrainConfig(RecipeConfig):
    out: str = "runs/pretrain"
    model: str = "shapes-teacher"  # a diffusers model folder or preset: its config.json (random weights)
    num_layers: int = 0  # > 0: this many blocks instead of the config's
    meta: dict = field(default_factory=dict)  # written to the output's fastlight.json
    hooks: list = field(default_factory=list)  # logging hooks [{_component_: NAME, ...}] (fastlight.hooks)
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    beta2: float = 0.99
    ema_decay: float = 0.999
    save_every: int = 250


def fresh_denoiser(folder: str | Path, num_layers: int = 0, meta: dict | None = None) -> tuple[Denoiser, dict]:
    """A randomly initialised denoiser with the architecture of `folder`'s config.json (and its null
    text, part of the text encoder, when the folder has one); returns (denoiser, the model config)."""
    folder = resolve_model_path(folder)
    cfg_file = Path(folder) / "config.json"
    if not cfg_file.exists():
        raise ModelError(f"model {folder} has no config.json; pass a diffusers model folder (or a preset) whose "
                         f"architecture to train from random weights")
    raw = read_json_object(cfg_file, ModelError, "re-save the model with save_pretrained")
    config = {k: v for k, v in raw.items() if not k.startswith("_")}
    cls = raw.get("_class_name")
    if cls not in ADAPTERS:
        raise ModelError(f"{cfg_file} names class {cls!r}; fastlight supports {' and '.join(ADAPTERS)}")
    if num_layers > 0:
        config["num_layers"] = num_layers
    null_file = Path(folder) / "null_text.safetensors"
    null_text = read_safetensors(null_file, ModelError)["null_text"] if null_file.exists() else None
    return ADAPTERS[cls].from_config(null_text=null_text, meta=dict(meta or {}), **config), config


def flow_matching_loss(v: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, first_frame: bool) -> torch.Tensor:
    """|| v - (eps - x0) ||^2 over frames (frame 0 excluded unless first_frame); v: (B, C, F, H, W)."""
    f0 = 0 if first_frame else 1
    return (v[:, :, f0:].float() - v_target(x0, eps)[:, :, f0:].float()).pow(2).mean()


class PretrainRecipe:
    """trainable() is a freshly initialised denoiser (seeded by cfg.seed)."""

    def __init__(self, cfg: PretrainConfig):
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model, self.model_config = fresh_denoiser(cfg.model, cfg.num_layers, cfg.meta)
        self.source = recipe_source(cfg, self.model)
        self.run_info: dict = {}

    def trainable(self) -> Denoiser:
        return self.model

    def batch(self, step: int, rank: int = 0, num_processes: int = 1) -> dict:
        """The source's batch plus eps, s and CFG dropout (stream "pretrain"); pure in (seed, step, rank)."""
        b = flow_batch(self.source, self.model, self.cfg, "pretrain", step, rank, num_processes)
        del b["gens"], b["batch_gen"]
        return b

    def step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        dev = next(self.model.parameters()).device
        x0, eps, s = batch["x0"].to(dev), batch["eps"].to(dev), batch["s"].to(dev)
        cond = batch_cond(batch, dev)
        v = self.model(add_noise(x0, eps, s), s, cond)
        return {"loss": flow_matching_loss(v, x0, eps, first_frame=cond.image is None)}

    def save_output(self, path: Path, module: Denoiser) -> None:
        cfg = self.cfg
        metrics = Path(cfg.out) / "metrics.jsonl"
        curve = [[r["step"], round(r["loss"], 5)] for r in map(json.loads, metrics.read_text().splitlines())
                 if "loss" in r] if metrics.exists() else []
        module.save(path, {**cfg.meta, "train_config": asdict(cfg), "model_config": self.model_config,
                           "steps": cfg.steps, "wall_time_s": self.run_info.get("wall_time_s"),
                           "loss_curve": curve, "shift": cfg.shift})


PRETRAIN = (PretrainConfig, PretrainRecipe)
