"""`fastlight pretrain`: train the embedded Shapes teacher with flow matching + CFG dropout.

Loss (rectified flow): E || v_theta(x_t, s, c) - (eps - x0) ||^2 over the generated
frames (frame 0 is the clean image condition, TI2V). The text is dropped (null prompt)
with probability `cfg_dropout` so the model also learns the unconditional velocity.

Every batch is a pure function of (data_seed, step), so a resumed run sees exactly the
data it would have seen. Each `probe_every` steps the run logs **prompt sensitivity**:
the mean |x0_hat(true prompt) - x0_hat(opposite direction)| on a fixed probe batch with
the same noise, and the direction accuracy read off that one-step x0_hat by the oracle.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fastlight.shapes import text, world as shapes
from fastlight.diffusion.flow import add_noise, sample_s, v_target, x0_from_v
from fastlight.models.denoiser import Cond
from fastlight.shapes.preset import SHAPES_TEACHER_CONFIG
from fastlight.models.wan import WanDenoiser


@dataclass
class PretrainConfig:
    out: str = "runs/pretrain"
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1
    shift: float = 3.0
    data_seed: int = 0
    init_seed: int = 0
    num_layers: int = 16
    size: int = 24
    num_frames: int = 8
    p_two_objects: float = 0.3
    probe_every: int = 100
    save_every: int = 250
    log_every: int = 10
    threads: int = 2


def make_batch(cfg: PretrainConfig, step: int):
    """(x0 (B,3,F,H,W), text (B,L,D), eps, s, drop mask) for `step`, deterministic."""
    gen = torch.Generator().manual_seed(cfg.data_seed * 1_000_003 + step)
    world = shapes.WorldConfig(size=cfg.size, num_frames=cfg.num_frames, p_two_objects=cfg.p_two_objects)
    clips = [shapes.sample_clip(gen, world) for _ in range(cfg.batch_size)]
    x0 = shapes.render_batch(clips, world)
    txt = text.encode([c.prompt for c in clips])
    drop = torch.rand(cfg.batch_size, generator=gen) < cfg.cfg_dropout
    txt[drop] = 0.0
    eps = torch.randn(x0.shape, generator=gen)
    s = sample_s(cfg.batch_size, cfg.shift, gen)
    return x0, txt, eps, s


def flow_loss(model: WanDenoiser, x0, txt, eps, s) -> torch.Tensor:
    image = x0[:, :, :1]
    x_t = add_noise(x0, eps, s)
    v = model(x_t, s, Cond(txt, image))
    return (v[:, :, 1:] - v_target(x0, eps)[:, :, 1:]).pow(2).mean()


_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


def probe_set(cfg: PretrainConfig, n: int = 16):
    world = shapes.WorldConfig(size=cfg.size, num_frames=cfg.num_frames, p_two_objects=0.0)
    gen = torch.Generator().manual_seed(987_654)
    clips = []
    while len(clips) < n:
        c = shapes.sample_clip(gen, world)
        if c.objects[0].direction != "still":
            clips.append(c)
    swapped = [
        shapes.Clip(tuple(shapes.ShapeObject(**{**o.__dict__, "direction": _OPPOSITE[o.direction]}) for o in c.objects))
        for c in clips
    ]
    x0 = shapes.render_batch(clips, world)
    eps = torch.randn(x0.shape, generator=gen)
    return world, clips, swapped, x0, eps


@torch.no_grad()
def probe(model: WanDenoiser, probe_data, s_value: float = 0.75) -> dict:
    world, clips, swapped, x0, eps = probe_data
    s = torch.full((x0.shape[0],), s_value)
    x_t = add_noise(x0, eps, s)
    image = x0[:, :, :1]
    x0_true = x0_from_v(x_t, s, model(x_t, s, Cond(text.encode([c.prompt for c in clips]), image)))
    x0_swap = x0_from_v(x_t, s, model(x_t, s, Cond(text.encode([c.prompt for c in swapped]), image)))
    sens = (x0_true - x0_swap)[:, :, 1:].abs().mean().item()
    ok = 0
    for i, c in enumerate(clips):
        tr = shapes.track(x0_true[i], [c.objects[0].colour], min_area_px=1.0)[c.objects[0].colour]
        a, b = tr.centroid_px[0], tr.centroid_px[-1]
        if a is not None and b is not None:
            ok += shapes.classify_motion(b[0] - a[0], b[1] - a[1], still_px=0.5) == c.objects[0].direction
    return {"prompt_sensitivity": sens, "probe_direction_acc": ok / len(clips)}


def lr_at(cfg: PretrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _atomic_save_tensors(tensors: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.rename(path)


def save_checkpoint(out: Path, step: int, model, ema, opt, losses, wall_time_s: float = 0.0) -> None:
    ck = out / "checkpoint"
    tmp = out / "checkpoint.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(model.model.state_dict(), tmp / "model.safetensors")
    _atomic_save_tensors(ema.model.state_dict(), tmp / "ema.safetensors")
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses, "wall_time_s": wall_time_s}))
    old = out / "checkpoint.old"
    if ck.exists():
        ck.rename(old)
    tmp.rename(ck)
    if old.exists():
        import shutil

        shutil.rmtree(old)


def pretrain(cfg: PretrainConfig, progress: bool = True) -> Path:
    from tqdm import tqdm

    from fastlight.config import save_config

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    save_config(cfg, out)
    torch.manual_seed(cfg.init_seed)
    model_cfg = dict(SHAPES_TEACHER_CONFIG, num_layers=cfg.num_layers)
    model = WanDenoiser.from_config(**model_cfg)
    ema = WanDenoiser.from_config(**model_cfg)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    start, losses, wall_before = 0, [], 0.0
    ck = out / "checkpoint"
    if ck.exists():
        model.model.load_state_dict(load_file(str(ck / "model.safetensors")))
        ema.model.load_state_dict(load_file(str(ck / "ema.safetensors")))
        opt.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
        state = json.loads((ck / "state.json").read_text())
        start, losses, wall_before = state["step"], state["losses"], state.get("wall_time_s", 0.0)
        print(f"resuming {out} from step {start}")
    probe_data = probe_set(cfg)
    metrics_f = open(out / "metrics.jsonl", "a")
    t0 = time.time()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress, desc="pretrain")
    run_loss = None
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        x0, txt, eps, s = make_batch(cfg, step)
        loss = flow_loss(model, x0, txt, eps, s)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}; lower lr (now {cfg.lr}) and resume from {ck}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        rec = {"step": step + 1, "loss": loss.item(), "lr": lr_at(cfg, step)}
        if (step + 1) % cfg.probe_every == 0:
            rec.update(probe(model, probe_data))
        if (step + 1) % cfg.log_every == 0 or "prompt_sensitivity" in rec:
            losses.append([step + 1, round(run_loss, 5)])
            metrics_f.write(json.dumps(rec) + "\n")
            metrics_f.flush()
            bar.set_postfix(loss=f"{run_loss:.4f}", **({"sens": f"{rec['prompt_sensitivity']:.3f}", "dir": rec["probe_direction_acc"]} if "prompt_sensitivity" in rec else {}))
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(out, step + 1, model, ema, opt, losses, wall_before + time.time() - t0)
    metrics_f.close()
    wall = wall_before + time.time() - t0
    final = out / "model"
    ema.save(final, {"kind": "shapes-teacher", "train_config": asdict(cfg), "model_config": model_cfg,
                     "steps": cfg.steps, "wall_time_s": round(wall, 1), "loss_curve": losses,
                     "world": {"size": cfg.size, "num_frames": cfg.num_frames}, "shift": cfg.shift})
    return final
