"""Decoder distillation: a light decoder learns to reproduce the teacher VAE decoder's output.

    fastlight distill-decoder configs/shapes/decoder.yaml [key=value ...]

Student: a pruned `AutoencoderKLWan` folder (`fastlight prune-decoder` output, any light layout of prune.py's
`light_config`: it must decode the teacher's latents into videos of the teacher's shape; only its decoder and
post_quant_conv train, its encoder stays frozen and unused), `student: tiny` (a `TinyWanDecoder`,
fastlight/decoder/tiny.py, `tiny_width` channels) or `student: fast` (a `FastWanDecoder`, fastlight/decoder/fast.py:
one pass, 2-D convs on folded frames, pixel-shuffle head, `fast_width` channels; decode only, built for the
teacher's latents by `FastWanDecoder.from_teacher`). Teacher: the full VAE, frozen.

Latents (`latents:`), raw (un-normalised) VAE latents either way:
* a clip source (entry point group `fastlight.clips`; the Shapes plug-in registers `shapes`, the
  default): the teacher's own encoder (posterior mean) on the source's clips, rendered at the teacher's
  resolution and length (from its manifest, or `size` / `num_frames`), streamed, a pure function of
  (data_seed, step, rank); `short_frames` > 0 makes 3 steps in 4 use shorter clips (e.g. 5 frames =
  2 latent frames: the causal decoder's first chunk and a cached one, about half the cost) and every
  4th step the full length. With a real VAE this is "the teacher's encoder on real clips": point
  `latents` at the output of `fastlight preprocess VIDEOS --vae TEACHER` instead.
* a path: a `fastlight preprocess` shard folder (index.json) or a safetensors file whose `latents`
  tensor (N, C, T, h, w) holds e.g. the DiT's own samples. Both are *normalised* latents (the Wan
  pipelines' (z - latents_mean) / latents_std), de-normalised here with the teacher's config.
  `cache_targets: true` keeps the teacher's decode and stage outputs of each pool latent after its first use
  (the teacher's decode is ~90% of a step's cost for a fast student; memory: a video and its matched stage
  outputs, float16, per pool latent).

Loss = l1_weight * |student(z) - teacher(z)| (pixels, the student's unclamped output against the
teacher's clamped one) + feature_weight * mean over the decoder's stage outputs (mid block, each up
block) of ||P(student feature) - teacher feature||^2 / mean(teacher feature^2). P selects the
teacher channels the pruning kept (from the student's manifest, no parameters) for a pruned student, on
the stage outputs both decoders have (a patch2 student has no full-resolution stage),
and is a learned 1x1x1 conv for the tiny decoder. The fast decoder's stages have other frame counts and
resolutions than the teacher's (it makes every frame at latent resolution): each of its stage outputs is matched,
through a learned 1x1x1 conv, to the first unmatched teacher stage output of the same (frames, height, width)
(on the shipped Shapes VAE: its latent stage to the mid block, its s/2 level to up block 1), the others take
pixel L1 only; the manifest's `feature_sites` lists the pairs (empty: pixel L1 only). `edge_weight` adds
edge_weight * |grad(student(z)) - grad(teacher(z))| over the frames' horizontal and vertical finite differences
(the gradient difference loss of Mathieu et al. 2016, "Deep multi-scale video prediction beyond mean square
error", `edge_l1`): pixel L1 alone lets a small decoder blur the objects' edges, which the oracle reads as lost
sharpness and shape. `sharp_weight` adds sharp_weight * |log E(student(z)) - log E(teacher(z))|, E a frame's
gradient energy (`sharpness_l1`): the edge term measured blurrier still, the energy match does not reward a flat
frame. Runs on the one
training loop (resume, progress, checkpoints, metrics.jsonl); `out/model/` is a stock `AutoencoderKLWan`
folder (or a TinyWanDecoder / FastWanDecoder folder) plus manifest.json.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from fastlight.data.latents import LatentShards
from fastlight.decoder.fast import FastWanDecoder
from fastlight.decoder.prune import check_latents, count, decode_raw, decoder_groups, load_vae, read_vae_config
from fastlight.decoder.tiny import TinyWanDecoder
from fastlight.errors import ConfigError, DataError, MissingFileError, ModelError
from fastlight.fileio import atomic_write_json, read_safetensors
from fastlight.models.weights import load_pretrained
from fastlight.plugins import component, registered
from fastlight.train.loop import LoopConfig


def resolve_vae_path(name_or_path: str) -> Path:
    """A registered VAE preset (entry point group `fastlight.vaes`, e.g. the Shapes plug-in's
    'shapes-vae') -> its folder; anything else is a path."""
    name = str(name_or_path)
    if name in registered("fastlight.vaes"):
        return Path(component("fastlight.vaes", name)())
    return Path(name_or_path)


@dataclass
class DecoderDistillConfig(LoopConfig):
    out: str = "runs/decoder/distill"
    teacher: str = "shapes-vae"
    student: str = "runs/decoder/pruned"  # prune-decoder output folder, "tiny" or "fast"
    latents: str = "shapes"  # a clip source (fastlight.clips) | shard folder | safetensors file with `latents` (normalised)
    batch_size: int = 4
    l1_weight: float = 1.0
    feature_weight: float = 0.1
    edge_weight: float = 0.0  # > 0: the gradient difference loss on the frames' x / y finite differences (edge_l1)
    sharp_weight: float = 0.0  # > 0: the per-frame gradient-energy match (sharpness_l1): a blur penalty
    tiny_width: int = 16
    fast_width: int = 16  # student=fast: FastWanDecoder width (channels at the s/2 level; 2^(n-1) x at latent res)
    fast_latent_blocks: int = 1  # student=fast: residual causal-3D blocks at latent resolution
    fast_spatial_blocks: int = 1  # student=fast: residual blocks per spatial level
    fast_time_levels: int = 0  # student=fast: the first this many spatial levels mix time too (causal 3x3x3)
    size: int = 0  # clip-source latents: clip size / frames (0 = from the teacher's manifest)
    num_frames: int = 0
    short_frames: int = 0  # clip-source latents: > 0 = 3 steps in 4 use clips of this many frames (cheaper)
    data_seed: int = 0
    # latent-pool runs (a file / shard folder): keep the teacher's decode (float32) and stage outputs (float16) of
    # each pool latent after its first use: the teacher decode is ~90% of a step for a fast student (memory: one
    # video + the matched features per pool latent)
    cache_targets: bool = False
    pool_size: int = 0  # latent-pool runs: train on the first pool_size latents only (0: all); with cache_targets
    # the teacher then decodes each of them once, so the run's cost is pool_size teacher decodes + the student's steps
    threads: int = 2
    steps: int = 300
    lr: float = 5e-4
    warmup_steps: int = 10
    save_every: int = 50
    log_every: int = 10


def fast_layout(cfg: DecoderDistillConfig) -> dict:
    """The FastWanDecoder keyword arguments a config asks for (checked: one line naming a bad value)."""
    if cfg.fast_width < 1:
        raise ConfigError(f"fast_width must be >= 1, got {cfg.fast_width}")
    for key in ("fast_latent_blocks", "fast_spatial_blocks", "fast_time_levels"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    return {"width": cfg.fast_width, "latent_blocks": cfg.fast_latent_blocks,
            "spatial_blocks": cfg.fast_spatial_blocks, "time_levels": cfg.fast_time_levels}


# ----------------------------------------------------------------------------- decoding with features


def stage_sites(decoder) -> list[tuple[str, str]]:
    """(module name, channel group) of the Wan decoder's stage outputs: the mid block, then each up block
    (after its upsampler)."""
    _, _, sites = decoder_groups(decoder)
    n_mid = len(decoder.mid_block.resnets)
    names = [f"mid_block.resnets.{n_mid - 1}"]
    for b, blk in enumerate(decoder.up_blocks):
        names.append(f"up_blocks.{b}.upsamplers.0" if blk.upsamplers is not None
                     else f"up_blocks.{b}.resnets.{len(blk.resnets) - 1}")
    return [(n, sites[n]) for n in names]


def edge_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean |dx(x) - dx(y)| + |dy(x) - dy(y)| of two videos (B, C, F, H, W): their horizontal and vertical
    finite differences (the gradient difference loss, Mathieu et al. 2016, with exponent 1)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])  # (B, C, F, H, W - 1)
    dy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])  # (B, C, F, H - 1, W)
    return dx.abs().mean() + dy.abs().mean()


def grad_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-frame gradient energy of videos (B, C, F, H, W) -> (B, F): the mean squared horizontal plus the mean
    squared vertical finite difference over channels and pixels (the statistic ShapesBench's sharpness reads)."""
    dx = x[..., :, 1:] - x[..., :, :-1]  # (B, C, F, H, W - 1)
    dy = x[..., 1:, :] - x[..., :-1, :]  # (B, C, F, H - 1, W)
    return dx.pow(2).mean(dim=(1, 3, 4)) + dy.pow(2).mean(dim=(1, 3, 4))


def sharpness_l1(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean over videos and frames of |log grad_energy(x) - log grad_energy(y)|: penalises a blurrier (or
    noisier) frame as a whole. Why not edge_l1 alone: an L1 on the differences is lowest, where the student cannot
    place an edge exactly, for no edge at all, so it rewards blur (measured: benchmarks/README.md)."""
    return (torch.log(grad_energy(x) + eps) - torch.log(grad_energy(y) + eps)).abs().mean()


class _Capture:
    """Forward hooks that collect the given modules' outputs (concatenated over the causal chunks)."""

    def __init__(self, root: nn.Module, names: list[str]):
        mods = dict(root.named_modules())
        self.out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        self.hooks = [mods[n].register_forward_hook(self._fn(n)) for n in names]

    def _fn(self, name):
        def fn(_m, _i, o):
            self.out[name].append(o)
        return fn

    def result(self) -> dict[str, torch.Tensor]:
        return {n: torch.cat(v, 2) for n, v in self.out.items()}

    def close(self):
        for h in self.hooks:
            h.remove()


def decode_with_features(vae, z: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    cap = _Capture(vae.decoder, names)
    try:
        x = decode_raw(vae, z)
    finally:
        cap.close()
    feats = cap.result()
    return x, [feats[n] for n in names]


# ----------------------------------------------------------------------------- latents


def _clip_sources() -> str:
    return " / ".join(sorted(registered("fastlight.clips"))) or "a registered clip source"


def _load_latent_file(path: Path) -> torch.Tensor:
    if path.is_dir():
        if not (path / "index.json").is_file():
            raise MissingFileError(f"{path} has no index.json; pass a `fastlight preprocess` output folder, a "
                                   f"safetensors file with a `latents` tensor, or a clip source ({_clip_sources()})")
        data = LatentShards(path)
        return data.batch(range(len(data)))["x0"].float()
    if not path.is_file():
        raise MissingFileError(f"latents {path} not found; pass a `fastlight preprocess` folder, a safetensors "
                               f"file with a `latents` tensor, or a clip source ({_clip_sources()})")
    t = read_safetensors(path, DataError, "give a safetensors file with a `latents` tensor")
    if "latents" not in t:
        raise DataError(f"{path} has no `latents` tensor (keys: {', '.join(sorted(t)) or 'none'})")
    return t["latents"].float()


def denormalise(vae, x: torch.Tensor) -> torch.Tensor:
    """Wan pipelines' normalised latents -> the VAE's raw latents."""
    mean = torch.tensor(vae.config.latents_mean, dtype=x.dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=x.dtype).view(1, -1, 1, 1, 1)
    return x * std + mean


def is_clip_source(latents: str) -> bool:
    """Whether a `latents` value names a registered clip source (else it is a path)."""
    return latents in registered("fastlight.clips")


def clip_source(vae_dir: Path, name: str = "shapes", size: int = 0, num_frames: int = 0):
    """The clip source registered as `name` (entry point group `fastlight.clips`) for the VAE in
    `vae_dir`: a dataclass with `num_frames` whose `render(seed, n)` gives (n, 3, F, H, W) clips in
    [-1, 1] at the VAE's resolution (from its folder; `size` / `num_frames` > 0 override)."""
    return component("fastlight.clips", name)(vae_dir, size, num_frames)


@torch.no_grad()
def shapes_latents(vae, clips, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n clips in [-1, 1] of the clip source `clips` for `seed`, their raw latents = the encoder's
    posterior mean)."""
    x = clips.render(seed, n)
    return x, vae.encode(x).latent_dist.mean


# ----------------------------------------------------------------------------- the recipe


@torch.no_grad()
def _check_same_video(teacher, student, where: Path) -> None:
    """The student decodes the teacher's latents into videos of the teacher's shape (else one ModelError)."""
    if student.config.z_dim != teacher.config.z_dim:
        raise ModelError(f"student {where} has z_dim={student.config.z_dim}, the teacher {teacher.config.z_dim}; "
                         "prune the teacher with `fastlight prune-decoder`")
    z = torch.zeros(1, teacher.config.z_dim, 2, 2, 2)
    a, b = decode_raw(teacher, z).shape, decode_raw(student, z).shape
    if a != b:
        raise ModelError(f"student {where} decodes {tuple(b)} videos where the teacher decodes {tuple(a)}; "
                         "prune the teacher with `fastlight prune-decoder`")


class _Student(nn.Module):
    def __init__(self, model: nn.Module, proj: nn.ModuleList):
        super().__init__()
        self.model = model
        self.proj = proj


class DecoderDistillRecipe:
    def __init__(self, cfg: DecoderDistillConfig):
        torch.set_num_threads(cfg.threads)
        if min(cfg.l1_weight, cfg.feature_weight, cfg.edge_weight, cfg.sharp_weight) < 0:
            raise ConfigError("l1_weight, feature_weight, edge_weight and sharp_weight must be >= 0")
        self.cfg = cfg
        self.teacher_dir = resolve_vae_path(cfg.teacher)
        self.teacher = load_vae(self.teacher_dir).requires_grad_(False)
        self.sites = stage_sites(self.teacher.decoder)
        self.names = [n for n, _ in self.sites]
        tw = decoder_groups(self.teacher.decoder)[0]
        z_dim = self.teacher.config.z_dim
        if cfg.student == "tiny":
            if cfg.tiny_width < 1:
                raise ConfigError(f"tiny_width must be >= 1, got {cfg.tiny_width}")
            model = TinyWanDecoder(z_dim=z_dim, width=cfg.tiny_width,
                                   temporal_upsample=tuple(self.teacher.config.temperal_downsample[::-1]))
            self.kind = "tiny"
            _, feats = model.stages(torch.zeros(1, z_dim, 1, 2, 2))
            proj = nn.ModuleList([nn.Conv3d(f.shape[1], tw[g], 1) for f, (_, g) in zip(feats, self.sites)])
            self.keep = None
        elif cfg.student == "fast":
            try:  # time_levels above the teacher's number of spatial levels: one line
                model = FastWanDecoder.from_teacher(self.teacher.config, **fast_layout(cfg))
            except ValueError as e:
                raise ConfigError(f"student=fast: {e}") from None
            self.kind = "fast"
            proj = self._match_fast_stages(model)
            self.keep = None
        else:
            self.student_dir = Path(cfg.student)
            read_vae_config(self.student_dir)
            model = load_vae(self.student_dir)
            _check_same_video(self.teacher, model, self.student_dir)
            model.encoder.requires_grad_(False)
            model.quant_conv.requires_grad_(False)
            self.kind = "pruned"
            # feature matching on the stage outputs both decoders have (a patch2 head drops the last stage)
            own = set(stage_sites(model.decoder))
            self.sites = [site for site in self.sites if site in own]
            self.names = [n for n, _ in self.sites]
            man_file = self.student_dir / "manifest.json"
            kept = json.loads(man_file.read_text()).get("kept_channels") if man_file.is_file() else None
            sw = decoder_groups(model.decoder)[0]
            self.keep = []
            for _, g in self.sites:
                if kept and g in kept and len(kept[g]) == sw[g]:
                    self.keep.append(torch.tensor(kept[g]))
                else:  # no manifest: the first channels (a truncated decoder)
                    self.keep.append(torch.arange(sw[g]))
            proj = nn.ModuleList()
        self.student = _Student(model, proj)
        self.world = self.pool = None  # a clip source, or a pool of latents
        if is_clip_source(cfg.latents):
            self.world = clip_source(self.teacher_dir, cfg.latents, cfg.size, cfg.num_frames)
        else:
            pool = _load_latent_file(Path(cfg.latents))
            check_latents(self.teacher, pool, f"latents {cfg.latents}")
            if cfg.pool_size:
                pool = pool[:cfg.pool_size]
            self.pool = denormalise(self.teacher, pool)
        if cfg.pool_size and self.pool is None:
            raise ConfigError(f"pool_size needs a latent pool (latents=FILE or a shards folder); the clip source "
                              f"{cfg.latents!r} draws new clips every step")
        if cfg.cache_targets and self.pool is None:
            raise ConfigError(f"cache_targets needs a latent pool (latents=FILE or a shards folder); the clip source "
                              f"{cfg.latents!r} draws new clips every step")
        self.cache: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.run_info: dict = {}

    def _match_fast_stages(self, model: FastWanDecoder) -> nn.ModuleList:
        """Pair each fast-decoder stage with the first unmatched teacher stage output of the same (frames, height,
        width) (a dry run on small latents); keeps only the matched teacher sites; one 1x1x1 conv per pair."""
        z = torch.zeros(1, self.teacher.config.z_dim, 2, 2, 2)
        with torch.no_grad():
            _, tf = decode_with_features(self.teacher, z, self.names)
            _, sf = model.stages(z)
        free, pairs = list(range(len(tf))), []
        for i, f in enumerate(sf):
            j = next((j for j in free if tf[j].shape[2:] == f.shape[2:]), None)
            if j is not None:
                free.remove(j)
                pairs.append((i, j))
        self.fast_stages = [i for i, _ in pairs]
        self.sites = [self.sites[j] for _, j in pairs]
        self.names = [n for n, _ in self.sites]
        self.feature_sites = [{"student": "latent" if i == 0 else f"levels.{i - 1}", "teacher": self.names[k]}
                              for k, (i, _) in enumerate(pairs)]
        return nn.ModuleList([nn.Conv3d(sf[i].shape[1], tf[j].shape[1], 1) for i, j in pairs])

    def trainable(self) -> nn.Module:
        return self.student

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        cfg = self.cfg
        n = cfg.batch_size // world_size
        seed = (cfg.data_seed * 1_000_003 + step) * 64 + rank
        if self.pool is None:
            world = self.world
            if cfg.short_frames and step % 4 != 3:
                world = dataclasses.replace(world, num_frames=cfg.short_frames)
            return {"z": shapes_latents(self.teacher, world, seed, n)[1]}
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(self.pool.shape[0], (n,), generator=g)
        return {"z": self.pool[idx], "idx": idx}

    def _student_forward(self, module: _Student, z):
        if self.kind == "tiny":
            x, feats = module.model.stages(z)
            return x, [p(f) for p, f in zip(module.proj, feats[:len(module.proj)])]
        if self.kind == "fast":
            x, feats = module.model.stages(z)
            return x, [p(feats[i]) for p, i in zip(module.proj, self.fast_stages)]
        x, feats = decode_with_features(module.model, z, self.names)
        return x, feats

    @torch.no_grad()
    def _targets(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The teacher's clamped decode and its stage outputs (the kept channels for a pruned student)."""
        tx, tf = decode_with_features(self.teacher, z, self.names)
        if self.keep is not None:
            tf = [f.index_select(1, k.to(z.device)) for f, k in zip(tf, self.keep)]
        return tx.clamp(-1, 1), tf

    def _cached_targets(self, z: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`_targets` through the per-pool-latent cache: the teacher runs on the latents not seen before; every
        target is read back from the cache (so a resumed run sees the same float16-rounded features)."""
        missing = sorted({i for i in idx if i not in self.cache})
        if missing:
            where = [idx.index(i) for i in missing]
            tx, tf = self._targets(z[where])
            for k, i in enumerate(missing):
                self.cache[i] = (tx[k].cpu(), [f[k].to("cpu", torch.float16) for f in tf])
        dev = z.device
        tx = torch.stack([self.cache[i][0] for i in idx]).to(dev)
        tf = [torch.stack([self.cache[i][1][j] for i in idx]).to(dev, torch.float32) for j in range(len(self.names))]
        return tx, tf

    def step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        dev = next(self.student.parameters()).device
        z = batch["z"].to(dev)
        self.teacher.to(dev)
        if self.cfg.cache_targets and "idx" in batch:
            tx, tf = self._cached_targets(z, batch["idx"].tolist())
        else:
            tx, tf = self._targets(z)
        sx, sf = self._student_forward(self.student, z)
        l1 = (sx - tx).abs().mean()
        feat = sum((((s - t) ** 2).mean() / (t.pow(2).mean() + 1e-6) for s, t in zip(sf, tf)),
                   sx.new_zeros(())) / max(len(tf), 1)  # no matched stage: pixel L1 only
        loss = cfg.l1_weight * l1 + cfg.feature_weight * feat
        out = {}
        if cfg.edge_weight > 0:
            edge = edge_l1(sx, tx)
            loss = loss + cfg.edge_weight * edge
            out["loss_edge"] = edge
        if cfg.sharp_weight > 0:
            sharp = sharpness_l1(sx.clamp(-1, 1), tx)
            loss = loss + cfg.sharp_weight * sharp
            out["loss_sharp"] = sharp
        with torch.no_grad():
            mse = ((sx.clamp(-1, 1) - tx) ** 2).mean()
            psnr = 10 * torch.log10(4.0 / mse.clamp_min(1e-12))
        return {"loss": loss, "loss_l1": l1, "loss_feature": feat, **out, "psnr_vs_teacher_db": psnr}

    def save_output(self, path: Path, module: _Student) -> None:
        path = Path(path)
        module.model.save_pretrained(path, safe_serialization=True)
        man = {"recipe": "distill-decoder", "kind": self.kind, "teacher": str(self.teacher_dir),
               "student": self.cfg.student, "latents": self.cfg.latents,
               "decoder_params": count(module.model.decoder if self.kind == "pruned" else module.model),
               "teacher_decoder_params": count(self.teacher.decoder), **self.run_info,
               "config": asdict(self.cfg)}
        if self.kind == "pruned":
            src = self.student_dir / "manifest.json"
            if src.is_file():
                prev = json.loads(src.read_text())
                man["pruning"] = {k: v for k, v in prev.items() if k != "kept_channels"}
                man["kept_channels"] = prev.get("kept_channels")
        elif self.kind == "fast":
            man.update(loader="fastlight.decoder.fast.FastWanDecoder.from_pretrained(path)", params=count(module.model),
                       encoder="none", width=self.cfg.fast_width, layout=fast_layout(self.cfg),
                       feature_sites=self.feature_sites,
                       use="decode only: a FastWanDecoder has no encoder; encode with the teacher VAE")
        else:
            man["loader"] = "fastlight.decoder.tiny.TinyWanDecoder.from_pretrained(path)"
        atomic_write_json(path / "manifest.json", man)


def load_light_decoder(path: str | Path):
    """A distilled decoder folder -> a model with `.decode(z).sample`: a stock AutoencoderKLWan, a
    TinyWanDecoder or a FastWanDecoder (its config's _class_name says which)."""
    p = Path(path)
    cfg_file = p / "config.json"
    name = json.loads(cfg_file.read_text()).get("_class_name") if cfg_file.is_file() else None
    own = {"TinyWanDecoder": TinyWanDecoder, "FastWanDecoder": FastWanDecoder}
    if name in own:
        return load_pretrained(own[name], p, "decoder folder").eval()
    return load_vae(p)


def distill_decoder(config_path: str | None, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """Train a light decoder (`DecoderDistillConfig` from YAML + key=value overrides) on the one loop;
    returns the trained decoder's folder."""
    from fastlight.config import load_config
    from fastlight.train.loop import train

    cfg = load_config(DecoderDistillConfig, config_path, overrides or [])
    return train(DecoderDistillRecipe(cfg), cfg, progress=progress)
