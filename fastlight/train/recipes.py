"""Training recipes for `fastlight.train.loop.train` (DESIGN.md section 1).

dpp — FastLightGen Stage II, dynamic probabilistic pruning. One set of weights serves the
unpruned model and a pruned one in which each candidate block (the plan's drop_blocks) is
skipped with probability p, drawn afresh each step (or each sample with per_sample):

    L = alpha * || v_pruned - sg(v_unpruned) ||^2 + (1 - alpha) * || v_pruned - (eps - x0) ||^2

over the generated frames (frame 0 is the clean TI2V image condition). The unpruned forward
runs under torch.no_grad. The result is one elastic model that works at many depths.

`target` picks v_unpruned: `shared` (the paper's: the same, trained weights run unpruned) or `teacher`
(a frozen copy of the starting weights, the teacher itself: the distillation target cannot drift with
the weights it supervises, so alpha = 1 has no trivial solution; it costs one more copy of the weights,
no optimizer state and no extra forward). Measured: with `shared`, alpha = 1 found that trivial solution on the
Shapes pipeline (800 steps at lr 1e-3: distillation loss 4.5e-5, flow loss 34; README, the paper's table).
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastlight.diffusion.flow import add_noise, v_target
from fastlight.errors import ConfigError
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import Cond, Denoiser
from fastlight.models.load import load_denoiser
from fastlight.train.batches import RecipeConfig, batch_cond, flow_batch, per_sample, recipe_source


@dataclass
class DppConfig(RecipeConfig):
    out: str = "runs/dpp"
    plan: str = "runs/study/plan30.json"
    alpha: float = 1.0
    p: float = 0.5
    per_sample: bool = False
    target: str = "shared"  # v_unpruned from: shared (the trained weights, the paper's) or teacher (a frozen copy)
    lr: float = 1e-4
    ema_decay: float = 0.999


TARGETS = ("shared", "teacher")  # where dpp's distillation target v_unpruned comes from


def draw_skips(u: torch.Tensor, candidates: list[int], p: float) -> list[frozenset[int]]:
    """u: (B or 1, n_candidates) uniforms -> one skip set per row (candidate j skipped if u < p)."""
    return [frozenset(c for c, skip in zip(candidates, row.tolist()) if skip) for row in u < p]


def dpp_loss(v_pruned: torch.Tensor, v_unpruned: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
             alpha: float, first_frame: bool) -> dict[str, torch.Tensor]:
    """alpha * ||v_p - sg(v_u)||^2 + (1 - alpha) * ||v_p - (eps - x0)||^2; v: (B, C, F, H, W).
    first_frame=False excludes frame 0 (the clean TI2V condition)."""
    f0 = 0 if first_frame else 1
    vp = v_pruned[:, :, f0:].float()
    distill = (vp - v_unpruned.detach()[:, :, f0:].float()).pow(2).mean()
    flow = (vp - v_target(x0, eps)[:, :, f0:].float()).pow(2).mean()
    return {"loss": alpha * distill + (1 - alpha) * flow, "loss_distill": distill, "loss_flow": flow}


def pruned_forward(model: Denoiser, x_t, s, cond: Cond, skips: list[frozenset[int]]) -> torch.Tensor:
    """Run the model once per distinct skip set (per-sample sets are grouped); (B, C, F, H, W)."""
    if len(skips) == 1:
        return model(x_t, s, cond, skip=skips[0])
    groups: dict[frozenset[int], list[int]] = {}
    for i, sk in enumerate(skips):
        groups.setdefault(sk, []).append(i)
    v = None
    for sk, rows in groups.items():
        idx = torch.tensor(rows, device=x_t.device)
        vg = model(x_t[idx], s[idx], cond.index(idx), skip=sk)
        if v is None:
            v = vg.new_empty((x_t.shape[0], *vg.shape[1:]))
        v[idx] = vg
    return v


class DppRecipe:
    """Stage II recipe: trainable() is the teacher's weights, shared by both paths."""

    def __init__(self, cfg: DppConfig):
        from fastlight.analyze.plans import read_plan
        from fastlight.models.load import resolve_model_path

        if not 0 <= cfg.p <= 1 or not 0 <= cfg.alpha <= 1:
            raise ConfigError(f"p and alpha must be in [0, 1], got p={cfg.p}, alpha={cfg.alpha}")
        if cfg.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {cfg.target!r}")
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.teacher_path = resolve_model_path(cfg.teacher)
        self.model = load_denoiser(self.teacher_path)
        self.plan_path = Path(cfg.plan)
        self.plan = read_plan(self.plan_path, self.model)
        self.candidates = list(self.plan["drop_blocks"])
        # the frozen distillation target (target=teacher); shared: the trained weights themselves
        self.target = copy.deepcopy(self.model).requires_grad_(False).eval() if cfg.target == "teacher" else None
        self.source = recipe_source(cfg, self.model)
        self.run_info: dict = {}

    def trainable(self) -> Denoiser:
        return self.model.requires_grad_(True)

    def frozen(self) -> dict[str, torch.nn.Module]:
        """target=teacher: the frozen copy the loop shards with the model (FSDP2), outside the checkpoints
        (it is the teacher folder's weights, read again on resume)."""
        return {"target": self.target} if self.target is not None else {}

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """The source's batch plus eps, s, CFG dropout and the skip sets (stream "dpp"); pure in (seed, step, rank).
        One skip set for the whole global batch (the same on every process), or one per sample (per_sample)."""
        cfg = self.cfg
        b = flow_batch(self.source, self.model, cfg, "dpp", step, rank, world_size)
        gens, batch_gen = b.pop("gens"), b.pop("batch_gen")
        m = len(self.candidates)
        if cfg.per_sample:
            u = per_sample(gens, lambda g: torch.rand(m, generator=g))
        else:
            u = torch.rand(1, m, generator=batch_gen)
        return {**b, "skips": draw_skips(u, self.candidates, cfg.p)}

    def step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        dev = next(self.model.parameters()).device
        x0, eps, s = batch["x0"].to(dev), batch["eps"].to(dev), batch["s"].to(dev)
        cond = batch_cond(batch, dev)
        x_t = add_noise(x0, eps, s)
        with torch.no_grad():
            v_unpruned = (self.model if self.target is None else self.target)(x_t, s, cond)
        v_pruned = pruned_forward(self.model, x_t, s, cond, batch["skips"])
        out = dpp_loss(v_pruned, v_unpruned, x0, eps, self.cfg.alpha, first_frame=cond.image is None)
        out["skipped"] = torch.tensor(sum(len(k) for k in batch["skips"]) / len(batch["skips"]))
        return out

    def save_output(self, path: Path, module: Denoiser) -> None:
        path = Path(path)
        cfg = self.cfg
        module.save(path, {"kind": "dpp-elastic", "teacher": str(self.teacher_path), "plan": "plan.json",
                           "candidates": self.candidates, "alpha": cfg.alpha, "p": cfg.p,
                           "target": cfg.target})
        shutil.copyfile(self.plan_path, path / "plan.json")
        manifest = {"recipe": "dpp", "teacher": str(self.teacher_path), "plan": str(self.plan_path),
                    "candidates": self.candidates, "alpha": cfg.alpha, "p": cfg.p, "per_sample": cfg.per_sample,
                    **self.run_info, "config": asdict(cfg)}
        atomic_write_json(path / "manifest.json", manifest)


RECIPES = {"dpp": (DppConfig, DppRecipe)}
