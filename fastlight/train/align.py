"""Lightning Video training recipe `align` (DESIGN.md section 2): a width- (or depth-) pruned
student learns from the frozen teacher it was cut from, in two phases.

    phase 1 (optimizer step < phase1_steps):
        L = L_fm + w_output * L_out + w_layer * L_layer
    phase 2 (the remaining steps up to `steps`):
        L = L_fm

    L_fm    = || v_student - (eps - x0) ||^2                       (flow matching)
    L_out   = || v_student - sg(v_teacher) ||^2                     (output alignment)
    L_layer = mean over aligned blocks b of || h_student_b - sg(h_teacher_b) ||^2   (layer alignment)

Velocities are compared over the generated frames only (frame 0 is the clean TI2V image
condition); hidden states (B, N, D) over every token. Block correspondence: a width-pruned
student keeps every block, so student block b <-> teacher block b; a depth-pruned student's
block j <-> the teacher's j-th kept block (plan["keep_blocks"][j]). The teacher runs under
torch.no_grad and is never optimised; in phase 2 it is not run at all.

The student is built with `fastlight.prune.surgery.prune_width` (FFN units; the stock
WanTransformer3DModel with a smaller global ffn_dim) or `prune_depth`, so the output folder
loads with the stock diffusers class.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastlight.diffusion.flow import add_noise, v_target
from fastlight.errors import ConfigError
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import load_denoiser
from fastlight.train.batches import RecipeConfig, batch_cond, flow_batch, recipe_source


@dataclass
class AlignConfig(RecipeConfig):
    out: str = "runs/align"
    plan: str = "runs/study/width30.json"  # a width plan (FFN units) or a depth plan
    w_output: float = 1.0
    w_layer: float = 1.0
    phase1_steps: int = 150  # optimizer steps with the alignment terms; then flow matching only
    align_blocks: list[int] | None = None  # teacher block ids to align; None = every block the student has
    lr: float = 1e-4
    ema_decay: float = 0.999


def block_pairs(plan: dict, num_teacher_blocks: int, align_blocks=None) -> list[tuple[int, int]]:
    """[(student block id, teacher block id)] aligned by L_layer. Width plans keep every block
    (identity); depth plans map the student's j-th block to the teacher's j-th kept block."""
    if plan["type"] == "width":
        pairs = [(i, i) for i in range(num_teacher_blocks)]
    else:
        pairs = list(enumerate(sorted(plan["keep_blocks"])))
    if align_blocks is not None:
        have = {t for _, t in pairs}
        missing = sorted(set(align_blocks) - have)
        if missing:
            raise ConfigError(f"align_blocks {missing} have no student counterpart (the plan drops them or the "
                              f"teacher has blocks 0..{num_teacher_blocks - 1}); align only kept teacher blocks")
        pairs = [(s, t) for s, t in pairs if t in set(align_blocks)]
    return pairs


def align_loss(v_student: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, first_frame: bool,
               v_teacher: torch.Tensor | None = None, h_student: dict | None = None, h_teacher: dict | None = None,
               pairs: list[tuple[int, int]] = (), w_output: float = 1.0, w_layer: float = 1.0) -> dict:
    """L_fm (+ w_output L_out + w_layer L_layer when v_teacher is given); v: (B, C, F, H, W),
    hidden states {block id: (B, N, D)}. first_frame=False excludes frame 0 from the velocity terms."""
    f0 = 0 if first_frame else 1
    vs = v_student[:, :, f0:].float()
    fm = (vs - v_target(x0, eps)[:, :, f0:].float()).pow(2).mean()
    if v_teacher is None:
        zero = fm.new_zeros(())
        return {"loss": fm, "fm": fm, "out": zero, "layer": zero, "phase": fm.new_tensor(2.0)}
    out = (vs - v_teacher.detach()[:, :, f0:].float()).pow(2).mean()
    if pairs:
        layer = torch.stack([(h_student[s].float() - h_teacher[t].detach().float()).pow(2).mean()
                             for s, t in pairs]).mean()
    else:
        layer = fm.new_zeros(())
    loss = fm + w_output * out + w_layer * layer
    return {"loss": loss, "fm": fm, "out": out, "layer": layer, "phase": fm.new_tensor(1.0)}


def build_student(teacher: Denoiser, plan: dict) -> Denoiser:
    """A new pruned denoiser (the teacher is not modified): prune_width for width plans, prune_depth for depth."""
    from fastlight.prune.surgery import prune_depth, prune_width

    if plan["type"] == "width":
        return prune_width(teacher, plan["layers"])
    return prune_depth(teacher, plan["drop_blocks"])


class AlignRecipe:
    """trainable() is the pruned student; the teacher is frozen (requires_grad False, no_grad forwards)."""

    def __init__(self, cfg: AlignConfig):
        from fastlight.analyze.plans import read_plan
        from fastlight.models.load import resolve_model_path

        if cfg.w_output < 0 or cfg.w_layer < 0:
            raise ConfigError(f"w_output and w_layer must be >= 0, got {cfg.w_output}, {cfg.w_layer}")
        if cfg.phase1_steps < 0:
            raise ConfigError(f"phase1_steps must be >= 0, got {cfg.phase1_steps}")
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.teacher_path = resolve_model_path(cfg.teacher)
        self.teacher = load_denoiser(self.teacher_path).eval().requires_grad_(False)
        self.source = recipe_source(cfg, self.teacher)  # before the students copy it: they carry its null
        self.plan_path = Path(cfg.plan)
        self.plan = read_plan(self.plan_path, self.teacher)
        self.student = build_student(self.teacher, self.plan).train()
        self.pairs = block_pairs(self.plan, self.teacher.num_blocks, cfg.align_blocks)
        self.run_info: dict = {}

    def trainable(self) -> Denoiser:
        return self.student.requires_grad_(True)

    def phase(self, step: int) -> int:
        """1 or 2 for optimizer step `step` (0-based)."""
        return 1 if step < self.cfg.phase1_steps else 2

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """The source's batch plus eps, s and CFG dropout (stream "align"); pure in (seed, step, rank)."""
        b = flow_batch(self.source, self.teacher, self.cfg, "align", step, rank, world_size)
        del b["gens"], b["batch_gen"]
        return b

    def step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        dev = next(self.student.parameters()).device
        if next(self.teacher.parameters()).device != dev:
            self.teacher.to(dev)
        x0, eps, s = batch["x0"].to(dev), batch["eps"].to(dev), batch["s"].to(dev)
        cond = batch_cond(batch, dev)
        x_t = add_noise(x0, eps, s)
        first_frame = cond.image is None
        if self.phase(step) == 2:
            v_s = self.student(x_t, s, cond)
            return align_loss(v_s, x0, eps, first_frame)
        student_ids = [p[0] for p in self.pairs]
        teacher_ids = [p[1] for p in self.pairs]
        with torch.no_grad():
            v_t, h_t = self.teacher(x_t, s, cond, capture=teacher_ids)
        v_s, h_s = self.student(x_t, s, cond, capture=student_ids)
        return align_loss(v_s, x0, eps, first_frame, v_t, h_s, h_t, self.pairs, self.cfg.w_output, self.cfg.w_layer)

    def save_output(self, path: Path, module: Denoiser) -> None:
        path = Path(path)
        cfg = self.cfg
        s_cfg, t_cfg = dict(module.model.config), dict(self.teacher.model.config)
        shape = {"plan_type": self.plan["type"], "num_blocks": module.num_blocks,
                 "teacher_num_blocks": self.teacher.num_blocks, "ffn_dim": s_cfg.get("ffn_dim"),
                 "teacher_ffn_dim": t_cfg.get("ffn_dim"), "num_params": module.num_params(),
                 "teacher_num_params": self.teacher.num_params()}
        module.save(path, {"kind": "align-student", "teacher": str(self.teacher_path), "plan": "plan.json", **shape})
        shutil.copyfile(self.plan_path, path / "plan.json")
        manifest = {"recipe": "align", "teacher": str(self.teacher_path), "plan": str(self.plan_path), **shape,
                    "aligned_blocks": [list(p) for p in self.pairs], "phase1_steps": cfg.phase1_steps,
                    "w_output": cfg.w_output, "w_layer": cfg.w_layer, **self.run_info, "config": asdict(cfg)}
        atomic_write_json(path / "manifest.json", manifest)


ALIGN = (AlignConfig, AlignRecipe)
