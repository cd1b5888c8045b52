"""icmd — VDMini fine-tuning of a statically depth-pruned student (DESIGN.md section 2).

The student is `prune_depth(teacher, plan["drop_blocks"])` (a stock diffusers module with
fewer layers); the teacher is frozen (no grad, never optimised). Per step:

    L = L_task + lambda_icd * L_ICD + lambda_mca * L_MCA_gen      (L_MCA_gen only after warmup)

  L_task    flow matching || v_student - (eps - x0) ||^2 over the generated frames
            (frame 0 is the clean TI2V condition and is excluded).
  L_ICD     Individual Content Distillation: student block j's output hidden state (B, N, D)
            is matched (MSE) to the full teacher's block kept_ids[j] output, averaged over the
            kept blocks (the paper sums over layers; the mean keeps lambda_icd independent of
            depth). At initialisation the terms of the blocks BEFORE the first dropped block are
            exactly 0 (same weights, same inputs) and those after it are > 0 (the student's
            input to them lacks the dropped blocks' residual updates).
  L_MCA     Multi-frame Content Adversarial: a discriminator with a spatial head (2-D convs
            per frame) and a temporal head (1-D convs over time on the spatially pooled
            features) scores instance-noised x0 predictions (x0_hat = x_t - s v) of the teacher
            ("real") and the student ("fake"); both get the SAME fresh noise at the same random
            level s' ~ U(instance_noise_min, instance_noise_max), and s' is fed to D as an extra
            input channel. D: hinge  relu(1 - D(real)) + relu(1 + D(fake));
            G: non-saturating  -log sigmoid(D(fake)) = softplus(-D(fake)). Each head's loss is
            the mean over its logits; the heads' losses are summed.

The loop trains two modules (`optimized()`): the student (loss `loss`) and, once MCA is active
(optimizer step >= mca_warmup_steps), the discriminator (loss `mca_disc`, its own AdamW with
lr = disc_lr, betas (0, 0.99), constant, unclipped). Both losses come from the same forwards: D's
hinge loss reads the student's predictions detached, and the student's adversarial loss runs D
with requires_grad off, so one backward sends each gradient to its own module. The loop syncs,
shards (FSDP2, like the student), checkpoints and resumes D like any other trained module.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fastlight.diffusion.flow import add_noise, v_target, x0_from_v
from fastlight.errors import ConfigError, PlanError
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import Denoiser
from fastlight.models.load import load_denoiser
from fastlight.train.batches import RecipeConfig, batch_cond, flow_batch, per_sample, recipe_source
from fastlight.train.loop import Optimized


@dataclass
class IcmdConfig(RecipeConfig):
    out: str = "runs/icmd"
    plan: str = "runs/study/plan30.json"
    lambda_icd: float = 0.1
    lambda_mca: float = 1.0
    mca_warmup_steps: int = 100  # optimizer steps with L_task + L_ICD only (paper: 3K of its run)
    disc_lr: float = 1e-5
    disc_channels: int = 32
    instance_noise_min: float = 0.05  # s' ~ U(min, max) for noising both x0 predictions
    instance_noise_max: float = 0.5
    lr: float = 1e-4
    ema_decay: float = 0.999


# ---- pure loss pieces ----------------------------------------------------------------------------

def task_loss(v: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, first_frame: bool) -> torch.Tensor:
    """|| v - (eps - x0) ||^2 over frames (frame 0 excluded unless first_frame); v: (B, C, F, H, W)."""
    f0 = 0 if first_frame else 1
    return (v[:, :, f0:].float() - v_target(x0, eps)[:, :, f0:].float()).pow(2).mean()


def icd_terms(h_student: dict[int, torch.Tensor], h_teacher: dict[int, torch.Tensor],
              kept_ids: list[int]) -> list[torch.Tensor]:
    """One MSE per student block j: || h_student[j] - sg(h_teacher[kept_ids[j]]) ||^2."""
    return [(h_student[j].float() - h_teacher[t].detach().float()).pow(2).mean() for j, t in enumerate(kept_ids)]


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
    return F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean()


def g_nonsat_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss: mean -log sigmoid(D(fake)) (= softplus(-D(fake)))."""
    return F.softplus(-fake_logits.float()).mean()


class Discriminator(nn.Module):
    """Spatial head on each frame (2-D convs) + temporal head over time (1-D convs on the
    spatially pooled per-frame features). Input (B, C, F, H, W) and the instance-noise level
    s' (B,), appended as a constant channel. Returns [spatial (B, F*h*w), temporal (B, F)] logits."""

    def __init__(self, in_channels: int, channels: int = 32):
        super().__init__()
        c = channels
        self.trunk = nn.Sequential(
            nn.Conv2d(in_channels + 1, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, c, 4, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
        )
        self.spatial = nn.Conv2d(c, 1, 1)
        self.temporal = nn.Sequential(nn.Conv1d(c, c, 3, padding=1), nn.SiLU(), nn.Conv1d(c, 1, 1))

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> list[torch.Tensor]:
        B, C, Fr, H, W = x.shape
        s = torch.as_tensor(s, dtype=x.dtype, device=x.device).reshape(-1).expand(B)
        x = torch.cat([x, s.view(B, 1, 1, 1, 1).expand(B, 1, Fr, H, W)], dim=1)
        frames = x.permute(0, 2, 1, 3, 4).reshape(B * Fr, C + 1, H, W)
        feat = self.trunk(frames)  # (B*F, c, h, w)
        spatial = self.spatial(feat).reshape(B, -1)
        pooled = feat.mean(dim=(2, 3)).reshape(B, Fr, -1).transpose(1, 2)  # (B, c, F)
        temporal = self.temporal(pooled).reshape(B, Fr)
        return [spatial, temporal]


# ---- the recipe -----------------------------------------------------------------------------------

class IcmdRecipe:
    """Trains the pruned student and the discriminator; the full teacher is frozen."""

    def __init__(self, cfg: IcmdConfig):
        from fastlight.analyze.plans import read_plan
        from fastlight.models.load import resolve_model_path
        from fastlight.prune.surgery import prune_depth

        if cfg.lambda_icd < 0 or cfg.lambda_mca < 0:
            raise ConfigError(f"lambda_icd and lambda_mca must be >= 0, got {cfg.lambda_icd}, {cfg.lambda_mca}")
        if not 0 <= cfg.instance_noise_min <= cfg.instance_noise_max <= 1:
            raise ConfigError(f"need 0 <= instance_noise_min <= instance_noise_max <= 1, got "
                              f"{cfg.instance_noise_min}, {cfg.instance_noise_max}")
        if cfg.mca_warmup_steps < 0:
            raise ConfigError(f"mca_warmup_steps must be >= 0, got {cfg.mca_warmup_steps}")
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.teacher_path = resolve_model_path(cfg.teacher)
        self.teacher = load_denoiser(self.teacher_path).requires_grad_(False).eval()
        self.source = recipe_source(cfg, self.teacher)  # before the students copy it: they carry its null
        self.plan_path = Path(cfg.plan)
        self.plan = read_plan(self.plan_path, self.teacher)
        if self.plan.get("type") != "depth":
            raise PlanError(f"plan {self.plan_path} is a {self.plan.get('type')!r} plan; icmd needs a depth plan")
        self.drop_blocks = sorted(self.plan["drop_blocks"])
        self.kept_ids = [i for i in range(self.teacher.num_blocks) if i not in set(self.drop_blocks)]
        self.student = prune_depth(self.teacher, self.drop_blocks)  # new module; teacher untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 7919)
            self.disc = Discriminator(self.teacher.model.config.in_channels, cfg.disc_channels)
        self.run_info: dict = {}

    def optimized(self) -> dict[str, Optimized]:
        return {"generator": Optimized(self.student.requires_grad_(True), "loss"),
                "discriminator": Optimized(self.disc, "mca_disc", lr=self.cfg.disc_lr, betas=(0.0, 0.99),
                                           weight_decay=0.01, grad_clip=0.0, scheduled=False)}

    def mca_active(self, opt_step: int) -> bool:
        return self.cfg.lambda_mca > 0 and opt_step >= self.cfg.mca_warmup_steps

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """The source's batch plus eps, s, CFG dropout and the instance-noise draw (stream "icmd");
        pure in (seed, step, rank)."""
        cfg = self.cfg
        b = flow_batch(self.source, self.teacher, cfg, "icmd", step, rank, world_size)
        gens = b.pop("gens")
        del b["batch_gen"]
        lo, hi = cfg.instance_noise_min, cfg.instance_noise_max
        disc_s = lo + (hi - lo) * per_sample(gens, lambda g: torch.rand((), generator=g))
        disc_eps = per_sample(gens, lambda g: torch.randn(b["x0"].shape[1:], generator=g))
        return {**b, "disc_s": disc_s, "disc_eps": disc_eps}

    def _to(self, dev) -> None:
        if next(self.teacher.parameters()).device != dev:
            self.teacher.to(dev)

    def step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        dev = next(self.student.parameters()).device
        self._to(dev)
        x0, eps, s = batch["x0"].to(dev), batch["eps"].to(dev), batch["s"].to(dev)
        cond = batch_cond(batch, dev)
        first_frame = cond.image is None
        x_t = add_noise(x0, eps, s)
        with torch.no_grad():
            v_t, h_t = self.teacher(x_t, s, cond, capture=self.kept_ids)
        v_s, h_s = self.student(x_t, s, cond, capture=range(len(self.kept_ids)))

        task = task_loss(v_s, x0, eps, first_frame)
        icd = torch.stack(icd_terms(h_s, h_t, self.kept_ids)).mean()
        loss = task + cfg.lambda_icd * icd
        out = {"task": task.detach(), "icd": icd.detach()}
        if self.mca_active(step):
            f0 = 0 if first_frame else 1
            d_s, d_eps = batch["disc_s"].to(dev), batch["disc_eps"].to(dev)[:, :, f0:]
            real = add_noise(x0_from_v(x_t, s, v_t)[:, :, f0:].float(), d_eps, d_s)
            fake = add_noise(x0_from_v(x_t, s, v_s)[:, :, f0:].float(), d_eps, d_s)
            out["mca_disc"] = sum(d_hinge_loss(r, f) for r, f in zip(self.disc(real.detach(), d_s),
                                                                     self.disc(fake.detach(), d_s)))
            self.disc.requires_grad_(False)  # the student's adversarial loss sends no gradient into D
            mca_gen = sum(g_nonsat_loss(f) for f in self.disc(fake, d_s))
            self.disc.requires_grad_(True)
            loss = loss + cfg.lambda_mca * mca_gen
            out["mca_gen"] = mca_gen.detach()
        return {"loss": loss, **out}

    def save_output(self, path: Path, module: Denoiser) -> None:
        path = Path(path)
        cfg = self.cfg
        module.save(path, {"kind": "icmd-student", "teacher": str(self.teacher_path), "plan": "plan.json",
                           "drop_blocks": self.drop_blocks, "kept_blocks": self.kept_ids})
        shutil.copyfile(self.plan_path, path / "plan.json")
        manifest = {"recipe": "icmd", "teacher": str(self.teacher_path), "plan": str(self.plan_path),
                    "drop_blocks": self.drop_blocks, "kept_blocks": self.kept_ids,
                    "lambda_icd": cfg.lambda_icd, "lambda_mca": cfg.lambda_mca,
                    "mca_warmup_steps": cfg.mca_warmup_steps, "disc_lr": cfg.disc_lr,
                    "instance_noise": [cfg.instance_noise_min, cfg.instance_noise_max],
                    **self.run_info, "config": asdict(cfg)}
        atomic_write_json(path / "manifest.json", manifest)


ICMD = (IcmdConfig, IcmdRecipe)
