"""fastlightgen / dmd2 — Stage III distribution matching distillation (DESIGN.md section 1).

Three models:
  G      the few-step generator = prune_depth(Stage II model, plan drop_blocks); trained by the
         loop (AdamW + EMA).
  real   the frozen Stage II (elastic) model with its full weights; its *pruned* evaluation
         runs it with skip = the plan's drop_blocks (no copy).
  fake   the critic: a trainable copy of the PRUNED model (starts equal to G), trained by the
         loop with its own AdamW (`optimized()`).

Well-guided teacher (CFG form `uncond + w (cond - uncond)` everywhere, cond and uncond
batched in one forward):

    v_cfg(m) = v_m(uncond) + beta1 (v_m(cond) - v_m(uncond))     m in {p (pruned), u (unpruned)}
    v_real   = v_cfg(p) + beta2 (v_cfg(u) - v_cfg(p))

beta1 ~ U(beta1_min, beta1_max) per sample, beta2 fixed. `dmd2` is the same code with no plan
(G, critic and teacher are the unpruned model) and beta2 = 0.

One optimizer step = backward simulation to a random exit step k (same on all ranks), G's x0
prediction at s_k (first frame pinned to the TI2V image), the critic's loss on the detached sample
(flow matching at shifted s ~ U(0, 1)) and, on every `critic_steps`-th optimizer step, the DMD
generator loss at shifted s ~ U(s_min, s_max):

    grad = (x0_fake - x0_real) / mean|x0_g - x0_real|        (per sample; float32; nan_to_num)
    loss = 0.5 || x0_g - sg(x0_g - grad) ||^2                (mean)    => dloss/dx0_g = grad / numel

The loop trains both (`optimized()`): the critic (loss `critic`, its own AdamW: critic_lr, betas
(0, 0.999), no weight decay, constant, unclipped) on every step, G (loss `loss`) only on the steps
whose `step()` returns it; x0_fake and x0_real are computed under no_grad, so one backward sends
each gradient to its own module. Both are synced, sharded (FSDP2), checkpointed and resumed by the
loop; the EMA follows G.

Options: `score_init=unpruned` starts the fake score from the unpruned model and uses the
unpruned model alone as the real score (FastLightGen Table 9's "strong teacher"); `shared_prefix`
(default on) evaluates the pruned and unpruned real score in one `Denoiser.forward_shared`, so
the blocks before the first pruned block run once (benchmarks/dmd_cost.py measures the saving);
`gan_weight > 0` adds DMD2's GAN head on the critic's hidden state (critic: softplus
classification of real Shapes clips vs G samples, G: non-saturating loss through the frozen
critic). `plan: teacher` (default) takes the plan the Stage II model carries in its folder.

Collapse guard (on by default). Every step logs G's sample statistics (`sample_stats`, frames
after the pinned first one, against the batch's clean training clips): x0_mean, x0_std,
x0_contrast (per-frame spatial std: ~0 for one-colour or black frames), x0_roughness (neighbour
differences over variance: 1 for white noise), the same of the data (data_*) and G's over the
data's (x0_*_ratio); the loop logs every generator step (`always_log`). On generator steps,
averaged over processes (so all stop together), a collapse stops the run with a CollapseError
(one line from the CLI: the step, the statistic, the fix): non-finite samples at once; for
`collapse_patience` generator steps in a row, one colour / black frames (contrast ratio below
`collapse_low` times min(1, its value on the run's first generator step)), noise (std or roughness
ratio above `collapse_high` times max(1, its first value)), or, opt-in and absolute, x0_std below
`collapse_std` (0 turns a test off). The first step's values only loosen the limits: a model that
never matched the data (a random-weight test model) is judged against its own start. On the demo's
healthy run every ratio stays within 0.85-1.35 (README, Stage III): the defaults never fire there.

Sharding: the frozen real score is the recipe's `frozen()` module: under FSDP2 the loop shards it
like G and the critic, without optimizer state and outside the checkpoints (it is an input, read
again from the Stage II folder on resume).

Config name clash: LoopConfig already owns `beta1`/`beta2` (G's AdamW betas; beta1 = 0 as in DMD2), so
the guidance scales are `beta1_min`, `beta1_max` and `guide_beta2` (the paper's beta2).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from accelerate.utils import reduce

from fastlight.analyze.plans import Plan, model_plan, read_plan, write_plan
from fastlight.diffusion.flow import add_noise, pin_first_frame, sample_s, x0_from_v
from fastlight.diffusion.sampling import few_step_grid
from fastlight.diffusion.spec import SamplerSpec
from fastlight.errors import CollapseError, ConfigError, PlanError
from fastlight.fileio import atomic_write_json
from fastlight.models.denoiser import Cond, Denoiser
from fastlight.models.load import load_denoiser, resolve_model_path
from fastlight.prune.surgery import prune_depth
from fastlight.train.batches import RecipeConfig, batch_cond, flow_batch, per_sample, recipe_source
from fastlight.train.loop import Optimized

COLLAPSE_TESTS = ("contrast", "noise", "std")  # the collapse guard's tests (DmdRecipe._check_collapse)
GUARDED = ("x0_std", "x0_std_ratio", "x0_contrast_ratio", "x0_roughness_ratio")  # the statistics they read


# ---- pure pieces ------------------------------------------------------------------------------

def _per_sample(w: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """scalar or (B,) -> broadcastable against x (B, ...)."""
    w = torch.as_tensor(w, dtype=x.dtype, device=x.device)
    return w.reshape(-1, *([1] * (x.ndim - 1))) if w.ndim else w


def cfg_v(model: Denoiser, x_t: torch.Tensor, s: torch.Tensor, cond: Cond, beta1, skip: Iterable[int] = ()):
    """v_u + beta1 (v_c - v_u), cond and uncond batched in ONE forward; beta1: scalar or (B,)."""
    from fastlight.diffusion.sampling import guided_cond

    skip = tuple(skip)
    B = x_t.shape[0]
    s = torch.as_tensor(s, dtype=torch.float32, device=x_t.device)
    s = s.expand(B) if s.ndim == 0 else s
    g = guided_cond(model, cond)
    if g.both is not None:
        v_c, v_u = model(torch.cat([x_t, x_t]), torch.cat([s, s]), g.both, skip=skip).chunk(2)
    else:  # shapes differ (cannot stack without changing the result): two forwards
        v_c, v_u = model(x_t, s, cond, skip=skip), model(x_t, s, g.uncond, skip=skip)
    v_c, v_u = v_c.float(), v_u.float()
    return v_u + _per_sample(beta1, v_u) * (v_c - v_u)


def well_guided_v(real: Denoiser, x_t: torch.Tensor, s: torch.Tensor, cond: Cond, skip_pruned: Iterable[int],
                  beta1: torch.Tensor, beta2: float, shared: bool = True) -> torch.Tensor:
    """v_real = v_cfg(p) + beta2 (v_cfg(u) - v_cfg(p)) (float32, (B, C, F, H, W)).

    p = `real` run with skip=skip_pruned, u = `real` unpruned; each with CFG scale beta1 (B,).
    Evaluations that cannot matter are not run: beta2 == 0 -> pruned only, beta2 == 1 ->
    unpruned only, empty skip_pruned -> one evaluation (p == u). `shared`: p and u (cond and
    uncond batched) in one `forward_shared`, so the embeddings and the blocks before the first
    pruned block run once. No grad context is imposed."""
    from fastlight.diffusion.sampling import guided_cond

    skip_pruned = tuple(sorted(set(skip_pruned)))
    if not skip_pruned or beta2 == 1:
        return cfg_v(real, x_t, s, cond, beta1, skip=() if beta2 == 1 else skip_pruned)
    if beta2 == 0:
        return cfg_v(real, x_t, s, cond, beta1, skip=skip_pruned)
    g = guided_cond(real, cond)
    if shared and g.both is not None:
        s = torch.as_tensor(s, dtype=torch.float32, device=x_t.device).expand(x_t.shape[0])
        v_p, v_u = real.forward_shared(torch.cat([x_t, x_t]), torch.cat([s, s]), g.both, [skip_pruned, ()])
        (vp_c, vp_u), (vu_c, vu_u) = v_p.float().chunk(2), v_u.float().chunk(2)
        w = _per_sample(beta1, vp_u)
        v_p, v_u = vp_u + w * (vp_c - vp_u), vu_u + w * (vu_c - vu_u)
    else:
        v_p = cfg_v(real, x_t, s, cond, beta1, skip=skip_pruned)
        v_u = cfg_v(real, x_t, s, cond, beta1)
    return v_p + beta2 * (v_u - v_p)


def dmd_grad(x0_g: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """(x0_fake - x0_real) / mean|x0_g - x0_real| per sample (non-batch dims), float32, nan_to_num."""
    x0_g, x0_real, x0_fake = x0_g.detach().float(), x0_real.detach().float(), x0_fake.detach().float()
    dims = tuple(range(1, x0_g.ndim))
    norm = (x0_g - x0_real).abs().mean(dim=dims, keepdim=True)
    return torch.nan_to_num((x0_fake - x0_real) / norm)


def dmd_generator_loss(x0_g: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * mean (x0_g - sg(x0_g - grad))^2; its gradient w.r.t. x0_g is grad / x0_g.numel()."""
    grad = dmd_grad(x0_g, x0_real, x0_fake)
    x = x0_g.float()
    target = (x - grad).detach()
    return 0.5 * (x - target).pow(2).mean()


def critic_loss(v_fake: torch.Tensor, x0_g: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Flow matching of the fake score on G's (detached) samples: mean (v_fake - (eps - x0_g))^2."""
    return (v_fake.float() - (eps.float() - x0_g.detach().float())).pow(2).mean()


def sample_stats(gen: torch.Tensor, data: torch.Tensor) -> dict[str, torch.Tensor]:
    """The collapse guard's statistics (float32 scalars) of G's samples `gen` against clean training
    clips `data` (both (B, C, F, H, W), first frame already removed for TI2V): x0_mean, x0_std
    (over everything); x0_contrast, the mean over samples, channels and frames of the std over
    (H, W) (~0 for one-colour or black frames, whatever their colour); x0_roughness, the mean squared
    difference of horizontal and vertical neighbours over 4 x the mean spatial variance (1 for white
    noise, near 0 for smooth frames: a scale-free noise test); the same of the data (data_*); and
    G's over the data's (x0_std_ratio, x0_contrast_ratio, x0_roughness_ratio)."""
    gen, data = gen.detach().float(), data.detach().float()
    tiny = torch.finfo(torch.float32).tiny  # flat frames: ratios become large or 0, never a division by zero

    def contrast(x):
        return x.flatten(-2).std(dim=-1).mean()

    def roughness(x):
        diffs = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
        return diffs / (4 * x.flatten(-2).var(dim=-1).mean()).clamp_min(tiny)

    out = {"x0_mean": gen.mean()}
    for name, fn in (("std", torch.std), ("contrast", contrast), ("roughness", roughness)):
        g, d = fn(gen), fn(data)
        out[f"x0_{name}"], out[f"data_{name}"], out[f"x0_{name}_ratio"] = g, d, g / d.clamp_min(tiny)
    return out


def backward_simulation(G: Denoiser, noise: torch.Tensor, cond: Cond, s_list: Sequence[float], k: int,
                        generator: torch.Generator | None = None,
                        renoise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run G WITHOUT grad through steps 0..k-1 of the few-step sampler (x0 = x - s v, then re-noise
    to s_{i+1} with eps = renoise[i] when given (drawn in advance: (>= k, B, C, F, H, W)), else fresh
    eps ~ N(0, I) from `generator`), returning (x_k, s_k): the input of G's step k (first frame pinned
    to cond.image), detached, float32, and s_k as a (B,) tensor. k = 0 returns the (pinned) noise at s_list[0]."""
    if not 0 <= k < len(s_list):
        raise ValueError(f"exit step k={k} outside 0..{len(s_list) - 1}")
    B = noise.shape[0]
    x = pin_first_frame(noise.float(), cond.image)
    rand_dev = generator.device if generator is not None else noise.device
    with torch.no_grad():
        for i in range(k):
            s = torch.full((B,), float(s_list[i]), device=x.device)
            v = G(x.to(noise.dtype), s, cond)
            x0 = pin_first_frame(x0_from_v(x, s, v.float()), cond.image)
            if renoise is not None:
                eps = renoise[i].to(x.device, torch.float32)
            else:
                eps = torch.randn(x.shape, generator=generator, dtype=torch.float32, device=rand_dev).to(x.device)
            x = pin_first_frame(add_noise(x0, eps, float(s_list[i + 1])), cond.image)
    return x.detach(), torch.full((B,), float(s_list[k]), device=x.device)


class GanHead(torch.nn.Module):
    """DMD2's GAN classifier on the fake score's features: tokens (B, N, D) -> one logit per sample."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, dim), torch.nn.SiLU(),
                                       torch.nn.Linear(dim, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).mean(dim=(1, 2))  # (B,)


# ---- config and recipe ------------------------------------------------------------------------

@dataclass
class DmdConfig(RecipeConfig):
    out: str = "runs/fastlightgen"
    teacher: str = "runs/dpp/model"  # Stage II elastic model folder (or 'shapes-teacher')
    plan: str = ""  # a depth plan (plan.json, or a model folder holding one); "": the plan the Stage II folder carries
    timesteps: list = field(default_factory=lambda: [1000, 750, 500, 250])
    beta1_min: float = 2.0  # inter CFG scale, per sample ~ U(beta1_min, beta1_max)
    beta1_max: float = 3.5
    guide_beta2: float = 0.25  # the paper's beta2 (intra CFG); LoopConfig.beta2 is Adam's
    critic_steps: int = 5  # G is updated every critic_steps-th optimizer step, the critic every step
    critic_lr: float = 2e-6
    s_min: float = 0.02
    s_max: float = 0.98
    score_init: str = "pruned"  # pruned: real = well-guided (pruned+unpruned), fake = pruned copy; unpruned: both unpruned
    shared_prefix: bool = True  # pruned and unpruned teacher evaluations share the blocks before the first pruned one
    gan_weight: float = 0.0  # DMD2 GAN head on the critic's features (0 = off): G loss weight
    gan_critic_weight: float = 0.01  # the head's classification loss weight inside the critic update
    gan_block: int = -1  # critic block whose output the head reads; -1 = the middle kept block
    collapse_low: float = 0.1  # stop when G's per-frame contrast / the data's stays below this (0 = off)
    collapse_high: float = 4.0  # stop when G's sample std / the data's stays above this (0 = off)
    collapse_std: float = 0.0  # stop when G's sample std (frames after the first) stays below this (0 = off)
    collapse_patience: int = 5  # ... each for this many consecutive generator steps (non-finite: at once)
    batch_size: int = 4
    cfg_dropout: float = 0.0
    lr: float = 2e-6
    beta1: float = 0.0  # G's Adam beta1 = 0, as in DMD2
    lr_schedule: str = "constant"
    ema_decay: float = 0.99


@dataclass
class Dmd2Config(DmdConfig):
    out: str = "runs/dmd2"
    guide_beta2: float = 0.0


def check_dmd_config(cfg: DmdConfig) -> None:
    if not 0 < cfg.beta1_min <= cfg.beta1_max:
        raise ConfigError(f"need 0 < beta1_min <= beta1_max, got {cfg.beta1_min}, {cfg.beta1_max}")
    if not 0 <= cfg.s_min < cfg.s_max <= 1:
        raise ConfigError(f"need 0 <= s_min < s_max <= 1, got {cfg.s_min}, {cfg.s_max}")
    if cfg.critic_steps < 1:
        raise ConfigError(f"critic_steps must be >= 1, got {cfg.critic_steps}")
    if cfg.score_init not in ("pruned", "unpruned"):
        raise ConfigError(f"score_init must be pruned or unpruned, got {cfg.score_init!r}")
    if not 0 <= cfg.guide_beta2 <= 1:
        raise ConfigError(f"guide_beta2 (the paper's beta2) must be in [0, 1], got {cfg.guide_beta2}")
    if cfg.gan_weight < 0 or cfg.gan_critic_weight < 0:
        raise ConfigError(f"gan_weight and gan_critic_weight must be >= 0, got {cfg.gan_weight}, {cfg.gan_critic_weight}")
    if not 0 <= cfg.collapse_low < 1:
        raise ConfigError(f"collapse_low (a fraction of the data's contrast) must be in [0, 1), got {cfg.collapse_low}; "
                          "0 turns the test off")
    if cfg.collapse_high != 0 and cfg.collapse_high <= 1:
        raise ConfigError(f"collapse_high (a multiple of the data's std) must be > 1, got {cfg.collapse_high}; "
                          "0 turns the test off")


class DmdRecipe:
    """Trains G (pruned) and the critic (fake score); the real score is frozen (Stage II weights)."""

    name = "fastlightgen"

    def __init__(self, cfg: DmdConfig):
        check_dmd_config(cfg)
        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.s_list = few_step_grid(cfg.timesteps)
        self.teacher_path = resolve_model_path(cfg.teacher)
        self.real = load_denoiser(self.teacher_path).requires_grad_(False).eval()
        self.source = recipe_source(cfg, self.real)  # before the students copy it: they carry its null
        self.plan, self.plan_source = self._plan(cfg)
        self.drop_blocks: list[int] = sorted(self.plan.drop_blocks) if self.plan is not None else []
        self.G = prune_depth(self.real, self.drop_blocks) if self.drop_blocks else copy.deepcopy(self.real)
        # score_init (FastLightGen Table 9): the fake score starts as the pruned model (matched to the
        # student) or the unpruned one; with "unpruned" the real score is the unpruned model alone
        pruned_scores = cfg.score_init == "pruned" and self.drop_blocks
        self.critic = prune_depth(self.real, self.drop_blocks) if pruned_scores else copy.deepcopy(self.real)
        self.beta2 = cfg.guide_beta2 if pruned_scores else 1.0
        self.G.requires_grad_(True).train()
        self.critic.requires_grad_(True).train()
        self.gan_head = self._gan_head() if cfg.gan_weight > 0 else None
        self._collapse_runs = dict.fromkeys(COLLAPSE_TESTS, 0)  # consecutive generator steps each test failed
        self._collapse_start: dict[str, float] | None = None  # the guarded statistics on the first generator step
        self.run_info: dict = {}

    def _plan(self, cfg: DmdConfig) -> tuple[Plan | None, str | None]:
        """The depth plan G is pruned with, and where it came from: cfg.plan (a plan.json, or a model
        folder holding one), else the plan the Stage II folder carries (the one it was trained with).
        Checked against the real-score model: Stage II keeps the teacher's architecture, so a plan made
        on the teacher fits it."""
        if cfg.plan:
            plan, where = read_plan(cfg.plan, self.real), str(cfg.plan)
        else:
            plan, where = model_plan(self.teacher_path, self.real), str(self.teacher_path / "plan.json")
            if plan is None:
                raise PlanError(f"{self.teacher_path} carries no plan.json (not a Stage II `dpp` model?): pass "
                                "plan=PATH (a depth plan from `fastlight plan`), or use the step-only dmd2 recipe")
        if plan.type != "depth":
            raise PlanError(f"plan {where} is a {plan.type!r} plan; Stage III needs a depth plan")
        return plan, where

    def _gan_head(self) -> "GanHead":
        blocks = [b.index for b in self.critic.blocks]
        i = self.cfg.gan_block if self.cfg.gan_block >= 0 else blocks[len(blocks) // 2]
        if i not in blocks:
            raise ConfigError(f"gan_block {i} is not a block of the critic (0..{len(blocks) - 1})")
        self.gan_block = i
        dim = self.critic.model.config.num_attention_heads * self.critic.model.config.attention_head_dim
        return GanHead(dim)

    def _gan_logits(self, x0: torch.Tensor, s: torch.Tensor, eps: torch.Tensor, cond: Cond) -> torch.Tensor:
        """D(x0): the head on the critic's hidden state after `gan_block`, at noise level s."""
        x_t = pin_first_frame(add_noise(x0, eps, s), cond.image)
        _, hidden = self.critic(x_t, s, cond, capture=[self.gan_block])
        return self.gan_head(hidden[self.gan_block])

    def optimized(self) -> dict[str, Optimized]:
        """G (loss `loss`, the run's AdamW settings) and the critic (loss `critic`, its own); the GAN head
        trains with the critic's loss and settings."""
        critic = dict(lr=self.cfg.critic_lr, betas=(0.0, 0.999), weight_decay=0.0, grad_clip=0.0, scheduled=False)
        parts = {"generator": Optimized(self.G, "loss"), "critic": Optimized(self.critic, "critic", **critic)}
        if self.gan_head is not None:
            parts["gan_head"] = Optimized(self.gan_head, "critic", **critic)
        return parts

    def frozen(self) -> dict[str, torch.nn.Module]:
        """The frozen real score: the loop shards it with the trained modules (FSDP2), without
        optimizer state and outside the checkpoints (the Stage II folder is the input it comes from)."""
        return {"real_score": self.real}

    def always_log(self, opt_step: int) -> bool:
        """Log every generator step (the collapse guard's statistics and the DMD loss), not only every log_every-th."""
        return self.is_generator_step(opt_step)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """Conditions (text, first-frame image when the source gives one) and clean clips (for the GAN
        head) from the source; per sample (stream "dmd"): starting noise, the backward simulation's
        re-noising eps, beta1, noise levels and eps for critic / DMD; for the batch (the same on every
        process): the exit step k."""
        cfg = self.cfg
        b = flow_batch(self.source, self.real, cfg, "dmd", step, rank, world_size)
        gens, shape = b["gens"], b["x0"].shape[1:]
        randn = lambda *size: per_sample(gens, lambda g: torch.randn(*size, generator=g))  # noqa: E731
        unif = lambda lo, hi: per_sample(gens, lambda g: lo + (hi - lo) * torch.rand((), generator=g))  # noqa: E731
        shifted = lambda lo, hi: per_sample(gens, lambda g: sample_s(1, cfg.shift, g, lo, hi)[0])  # noqa: E731
        out = {
            "text": b["text"], "real": b["x0"],
            "k": int(torch.randint(0, len(self.s_list), (1,), generator=b["batch_gen"])),
            "noise": randn(shape),
            "renoise": randn(len(self.s_list) - 1, *shape).transpose(0, 1),  # (steps - 1, B, C, F, H, W)
            "beta1": unif(cfg.beta1_min, cfg.beta1_max),
            "s_critic": shifted(0.0, 1.0), "eps_critic": randn(shape),
            "s_dmd": shifted(cfg.s_min, cfg.s_max), "eps_dmd": randn(shape),
        }
        for key in ("image", "extra"):
            if key in b:
                out[key] = b[key]
        return out

    def is_generator_step(self, opt_step: int) -> bool:
        return opt_step % self.cfg.critic_steps == 0

    def _to(self, dev) -> None:
        if next(self.real.parameters()).device != dev:
            self.real.to(dev)

    def critic_loss(self, x0_g: torch.Tensor, s: torch.Tensor, eps: torch.Tensor, cond: Cond,
                    real: torch.Tensor | None = None) -> torch.Tensor:
        """The critic's flow-matching loss on G's detached sample; with the GAN head
        + gan_critic_weight * (softplus(-D(real)) + softplus(D(x0_g))) at the same s, eps."""
        f0 = 0 if cond.image is None else 1
        x_t = pin_first_frame(add_noise(x0_g.detach(), eps, s), cond.image)
        v = self.critic(x_t, s, cond)
        loss = critic_loss(v[:, :, f0:], x0_g[:, :, f0:], eps[:, :, f0:])
        if self.gan_head is not None and real is not None:
            d_real = self._gan_logits(real, s, eps, cond)
            d_fake = self._gan_logits(x0_g.detach(), s, eps, cond)
            loss = loss + self.cfg.gan_critic_weight * (F.softplus(-d_real) + F.softplus(d_fake)).mean()
        return loss

    def step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        dev = next(self.G.parameters()).device
        self._to(dev)
        cond = batch_cond(batch, dev)
        image = cond.image
        f0 = 0 if cond.image is None else 1
        gen_step = self.is_generator_step(step)
        x_k, s_k = backward_simulation(self.G, batch["noise"].to(dev), cond, self.s_list, int(batch["k"]),
                                       renoise=batch["renoise"])
        with torch.set_grad_enabled(gen_step and torch.is_grad_enabled()):
            v_g = self.G(x_k, s_k, cond)
            x0_g = pin_first_frame(x0_from_v(x_k, s_k, v_g.float()), image)

        real = batch["real"].to(dev) if self.gan_head is not None else None
        stats = sample_stats(x0_g[:, :, f0:], batch["real"][:, :, f0:].to(dev))
        if gen_step:  # before the critic's loss: a collapsed sample stops the run with its own message
            self._check_collapse(stats, step)
        out = {"critic": self.critic_loss(x0_g, batch["s_critic"].to(dev), batch["eps_critic"].to(dev), cond, real),
               "k": torch.tensor(float(batch["k"])), "beta1": batch["beta1"].float().mean(), **stats}
        if not gen_step:
            return out

        s, eps, beta1 = batch["s_dmd"].to(dev), batch["eps_dmd"].to(dev), batch["beta1"].to(dev)
        with torch.no_grad():
            x_t = pin_first_frame(add_noise(x0_g.detach(), eps, s), image)
            x0_real = x0_from_v(x_t, s, well_guided_v(self.real, x_t, s, cond, self.drop_blocks if self.beta2 < 1 else (),
                                                      beta1, self.beta2, shared=cfg.shared_prefix).float())
            x0_fake = x0_from_v(x_t, s, self.critic(x_t, s, cond).float())
        dmd = dmd_generator_loss(x0_g[:, :, f0:], x0_real[:, :, f0:], x0_fake[:, :, f0:])
        loss = dmd
        if self.gan_head is not None:  # non-saturating G loss through the critic and head, both frozen here
            self.critic.requires_grad_(False)
            self.gan_head.requires_grad_(False)
            gan = F.softplus(-self._gan_logits(x0_g, s, eps, cond)).mean()
            self.critic.requires_grad_(True)
            self.gan_head.requires_grad_(True)
            loss = loss + cfg.gan_weight * gan
            out["gan_g"] = gan.detach()
        return {"loss": loss, "dmd": dmd.detach(), **out}

    def _check_collapse(self, stats: dict[str, torch.Tensor], opt_step: int) -> None:
        """The collapse guard (module doc): the statistics averaged over processes (every process
        stops at the same step), each ratio against the data's and against its value on the run's
        first generator step (the Stage II model's samples); raises CollapseError naming the step,
        the statistic and the fix."""
        cfg = self.cfg
        # averaged over processes as the loop averages its logged losses (accelerate's reduce), on the
        # statistics' own device (NCCL reduces device tensors only)
        v = dict(zip(GUARDED, reduce(torch.stack([stats[k].float() for k in GUARDED]), "mean").cpu().tolist()))
        fix = (f"lower lr ({cfg.lr}) or check the teacher ({self.teacher_path}: does it sample well?), then restart "
               f"from the Stage II model (the last checkpoint is in {cfg.out})")
        where = f"generator collapsed at optimizer step {opt_step + 1}"
        if not all(math.isfinite(x) for x in v.values()):
            raise CollapseError(f"{where}: its samples are not finite (noise blew up); {fix}")
        if self._collapse_start is None:
            self._collapse_start = dict(v)
        # a model whose samples never matched the data (a random-weight test model) is judged against its start
        low = cfg.collapse_low * min(1.0, self._collapse_start["x0_contrast_ratio"])
        high = cfg.collapse_high * max(1.0, self._collapse_start["x0_std_ratio"])
        rough = cfg.collapse_high * max(1.0, self._collapse_start["x0_roughness_ratio"])
        checks = {
            "contrast": (cfg.collapse_low > 0 and v["x0_contrast_ratio"] < low,
                         f"per-frame contrast {v['x0_contrast_ratio']:.3g}x the data's < {low:.3g} (collapse_low "
                         f"{cfg.collapse_low}: one colour or black frames)"),
            "noise": (cfg.collapse_high > 0 and (v["x0_std_ratio"] > high or v["x0_roughness_ratio"] > rough),
                      f"sample std {v['x0_std_ratio']:.3g}x the data's (limit {high:.3g}) and roughness "
                      f"{v['x0_roughness_ratio']:.3g}x the data's (limit {rough:.3g}), collapse_high {cfg.collapse_high}: noise"),
            "std": (cfg.collapse_std > 0 and v["x0_std"] < cfg.collapse_std,
                    f"sample std {v['x0_std']:.4f} < collapse_std {cfg.collapse_std}"),
        }
        for test, (failed, _) in checks.items():
            self._collapse_runs[test] = self._collapse_runs[test] + 1 if failed else 0
        for test, (_, what) in checks.items():
            if self._collapse_runs[test] >= cfg.collapse_patience:
                raise CollapseError(f"{where}: {what} for {self._collapse_runs[test]} generator steps in a row; {fix}")

    # ---- the collapse guard's state (saved with each checkpoint by the loop) ----
    def extra_state(self) -> dict:
        return {"collapse_runs": dict(self._collapse_runs), "collapse_start": self._collapse_start}

    def load_extra_state(self, state: dict) -> None:
        runs = {k: int((state.get("collapse_runs") or {}).get(k, 0)) for k in COLLAPSE_TESTS}
        runs["std"] = max(runs["std"], int(state.get("low_std_steps", 0)))  # checkpoints before the split
        self._collapse_runs = runs
        start = state.get("collapse_start")
        self._collapse_start = None if start is None else {k: float(start[k]) for k in GUARDED}

    def save_output(self, path: Path, module: Denoiser) -> None:
        path = Path(path)
        cfg = self.cfg
        # the student samples at its trained timesteps without CFG (guidance was distilled in)
        spec = SamplerSpec.few_step(cfg.timesteps, guidance=1.0)
        module.save(path, {"kind": f"{self.name}-student", "teacher": str(self.teacher_path),
                           "plan": "plan.json" if self.plan is not None else None, "drop_blocks": self.drop_blocks,
                           "sampler": spec.to_json()})
        spec.save(path)
        if self.plan is not None:  # one plan.json per model folder: the student's own, in the teacher's numbering
            write_plan(path, self.plan)
        manifest = {"recipe": self.name, "teacher": str(self.teacher_path),
                    "plan": self.plan_source, "drop_blocks": self.drop_blocks,
                    "timesteps": list(spec.timesteps), "s_list": self.s_list,
                    "beta1": [cfg.beta1_min, cfg.beta1_max], "beta2": self.beta2, "score_init": cfg.score_init,
                    "critic_steps": cfg.critic_steps, **self.run_info, "config": asdict(cfg)}
        atomic_write_json(path / "manifest.json", manifest)


class Dmd2Recipe(DmdRecipe):
    """The DMD2 baseline: same code, no plan, beta2 = 0 (unpruned G, critic and teacher)."""

    name = "dmd2"

    def _plan(self, cfg: DmdConfig) -> tuple[None, None]:
        if cfg.plan:
            raise PlanError(f"dmd2 is the step-only baseline (no pruning) but plan={cfg.plan!r} was given; "
                            "use the fastlightgen recipe to prune, or drop plan")
        return None, None


FASTLIGHTGEN = (DmdConfig, DmdRecipe)
DMD2 = (Dmd2Config, Dmd2Recipe)
