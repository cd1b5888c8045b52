"""Per-GPU memory plan of a run's stages (`fastlight run RECIPE --dry-run`): weights, gradients,
optimizer state and an activation ESTIMATE, for a transformer config, a stage and a number of GPUs.

    geo = geometry("wan2.1-t2v-1.3b")                   # a preset, a model folder or a config.json
    plan = memory_plan(geo, ["stage2", "stage3"], PlanOptions(num_gpus=8, gpu_memory_gb=80))
    plan.rows[0].total_gib, plan.fits

Parameter counts are exact: the diffusers class is built from its config on the meta device (no
memory, no hand formula) and its parameters counted.

Byte conventions (per parameter; every trained or frozen model is counted as sharded by FSDP2
over N GPUs, so each of these is divided by N; the training loop shards every trained module and
every frozen one a recipe declares (`recipe.frozen()`: Stage III's real score, without optimizer
state); the icmd / align teachers are not declared yet and are a full replica per process today):
  mixed_precision=bf16  trained: weights 2 (bf16), gradients 2 (bf16), optimizer 12 (fp32 master
                        weights 4 + AdamW exp_avg 4 + exp_avg_sq 4); frozen: weights 2 (bf16).
  mixed_precision=no    trained: weights 4, gradients 4, optimizer 8 (exp_avg + exp_avg_sq);
                        frozen: weights 4.
  EMA of the generator  4 (fp32), counted with the optimizer state (it is updated at the optimizer
                        step and offloads with it).
fastlight's own loop (accelerate autocast over fp32 parameters) splits a trained parameter's 16
bytes as 4 + 4 + 8 rather than 2 + 2 + 12: the same total. Under FSDP2 the block being computed is
all-gathered: two blocks' full weights (the current one and the prefetched next) are added to the
weights of the model in use.

CPU offload: `offload_params` moves the parameter shards and their gradient shards to the host (as
FSDP2's CPUOffloadPolicy / DeepSpeed ZeRO-3 offload_param do; the gathered blocks stay on the GPU);
`offload_optimizer` moves the optimizer state (and EMA) to the host. Offloaded bytes are reported
as `host_gib` per GPU process. `--offload none|params|optimizer|both` maps onto these two flags, with
the same names as the training loop's `offload=` key (fastlight/train/sharding.py).

Activations (an ESTIMATE, bf16 autocast, per GPU, for `samples` samples of `tokens` video tokens):
the per-token bytes of one block follow Korthikanti et al. 2022, "Reducing Activation Recomputation
in Large Transformer Models" (arXiv 2205.05198, section 4.1: 34 s b h bytes per GPT layer), with
flash attention (no s^2 scores kept), no dropout masks (DiTs have none) and the MLP's 4h replaced by
the config's FFN width f:
  Wan block (self-attn 10h, cross-attn 6h, three norms 6h, adaLN-modulated copies 4h, MLP 2h + 4f)
      A = 28 h + 4 f bytes per video token
  HunyuanVideo dual-stream block   A = 20 h + 4 f per (video + text) token
  HunyuanVideo single-stream block A = 14 h + 6 f per (video + text) token
  training, no checkpointing:  sum over blocks A_b * T
  training, checkpointing:     sum over blocks 4 h * T (the fp32 block inputs) + 2 * max_b A_b * T
                               (one block recomputed in backward plus its gradients)
  inference (no graph kept):   2 * max_b A_b * T + 2 * 4 h * T
with T = samples * tokens. Stage II (dpp) = one training graph + one inference pass (its teacher,
alpha > 0, is the same weights under no_grad); Stage III = the generator's and the critic's
training graphs (one backward) + the real score's inference with cond and uncond batched (2x).
Embeddings, the head, text-encoder outputs, CUDA context and allocator fragmentation are not
counted: budget 10-20% headroom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import diffusers
import torch

from fastlight.errors import ConfigError, ModelError
from fastlight.fileio import read_json_object
from fastlight.train.sharding import shard_units

GIB = 1024 ** 3
STAGES = ("analyze", "stage2", "stage3")
CLASSES = ("WanTransformer3DModel", "HunyuanVideoTransformer3DModel")

# Public configs of the real transformers (diffusers config.json keys). Sources:
#   Wan 2.1 1.3B / 14B: Wan-AI/Wan2.1-T2V-{1.3B,14B}-Diffusers transformer/config.json; the same
#     numbers as the Wan team's wan/configs/wan_t2v_1_3B.py (dim 1536, ffn 8960, 12 heads, 30 layers)
#     and wan_t2v_14B.py (dim 5120, ffn 13824, 40 heads, 40 layers), VAE stride (4, 8, 8), patch (1, 2, 2).
#   Wan 2.2 TI2V 5B: Wan-AI/Wan2.2-TI2V-5B-Diffusers; the Wan team's wan/configs/wan_ti2v_5B.py
#     (dim 3072, ffn 14336, 24 heads, 30 layers, in_dim 48, VAE stride (4, 16, 16), patch (1, 2, 2)).
#   HunyuanVideo 13B: hunyuanvideo-community/HunyuanVideo transformer/config.json = the defaults of
#     diffusers' HunyuanVideoTransformer3DModel (24 heads x 128, 20 dual + 40 single blocks, 2 refiner
#     blocks, mlp_ratio 4, text 4096 + pooled 768, guidance embeds); Tencent's config: hidden 3072,
#     mm_double_blocks_depth 20, mm_single_blocks_depth 40, patch (1, 2, 2); VAE stride (4, 8, 8).
_WAN_COMMON = dict(_class_name="WanTransformer3DModel", patch_size=[1, 2, 2], attention_head_dim=128,
                   in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                   rope_max_seq_len=1024, pos_embed_seq_len=None)
PRESETS: dict[str, dict] = {
    "wan2.1-t2v-1.3b": {**_WAN_COMMON, "num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30},
    "wan2.1-t2v-14b": {**_WAN_COMMON, "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40},
    "wan2.2-ti2v-5b": {**_WAN_COMMON, "num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30,
                       "in_channels": 48, "out_channels": 48},
    "hunyuanvideo-t2v-13b": dict(_class_name="HunyuanVideoTransformer3DModel", in_channels=16, out_channels=16,
                                 num_attention_heads=24, attention_head_dim=128, num_layers=20,
                                 num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2,
                                 patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=4096,
                                 pooled_projection_dim=768, rope_theta=256.0, rope_axes_dim=[16, 56, 56]),
}
VAE_STRIDE = {"wan2.1-t2v-1.3b": (4, 8, 8), "wan2.1-t2v-14b": (4, 8, 8), "wan2.2-ti2v-5b": (4, 16, 16),
              "hunyuanvideo-t2v-13b": (4, 8, 8)}
TEXT_TOKENS = {"WanTransformer3DModel": 512, "HunyuanVideoTransformer3DModel": 256}  # the pipelines' max lengths


@dataclass(frozen=True)
class Geometry:
    """A transformer config (diffusers keys, with `_class_name`), its VAE's (t, h, w) compression and,
    for a pixel-space model that carries its world size, a default video shape (frames, height, width)."""
    name: str
    config: dict
    vae_stride: tuple[int, int, int]
    default_shape: tuple[int, int, int] = (81, 480, 832)


def geometry(spec: str | Path) -> Geometry:
    """A preset name (PRESETS), a model folder (config.json or transformer/config.json) or a config.json."""
    name = str(spec)
    if name in PRESETS:
        return Geometry(name, PRESETS[name], VAE_STRIDE[name])
    path = Path(spec)
    if path.is_dir() and not (path / "config.json").exists() and (path / "transformer" / "config.json").exists():
        path = path / "transformer"
    cfg_file = path / "config.json" if path.is_dir() else path
    if not cfg_file.is_file():
        raise ModelError(f"{spec} is neither a geometry preset ({', '.join(PRESETS)}) nor a folder or file with a "
                         f"diffusers config.json; pass one of those")
    config = read_json_object(cfg_file, ModelError, "re-export the model")
    if config.get("_class_name") not in CLASSES:
        raise ModelError(f"{cfg_file} names class {config.get('_class_name')!r}; the memory plan knows "
                         f"{' and '.join(CLASSES)}")
    world = _world(cfg_file.parent)
    if world is not None:  # a pixel-space model (the Shapes teacher): no VAE, its own world size
        return Geometry(name, config, (1, 1, 1), world)
    wide = config.get("in_channels") == 48  # Wan 2.2's VAE: 16x spatial
    return Geometry(name, config, (4, 16, 16) if wide else (4, 8, 8))


def _world(folder: Path) -> tuple[int, int, int] | None:
    """(frames, size, size) from a model folder's fastlight.json `world`, when it has one."""
    meta = folder / "fastlight.json"
    if not meta.is_file():
        return None
    world = read_json_object(meta, ModelError, "re-export the model").get("world") or {}
    if "size" not in world or "num_frames" not in world:
        return None
    return int(world["num_frames"]), int(world["size"]), int(world["size"])


# ---- exact counts on the meta device -----------------------------------------------------------------

def build_meta(config: dict):
    """The diffusers transformer of `config`, its parameters on the meta device (no memory)."""
    cls = getattr(diffusers, config["_class_name"])
    with torch.device("meta"):
        return cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})


@dataclass(frozen=True)
class Counts:
    """Exact parameter counts: the whole model and each transformer block (in order)."""
    total: int
    blocks: tuple[int, ...]
    block_kinds: tuple[str, ...]

    def dropped(self, prune_ratio: float) -> tuple[int, ...]:
        """Block positions removed to take away at least `prune_ratio` of the parameters: the first and
        last block kept, the largest first (the fewest blocks, as a depth plan that found every block
        equally important would choose). Wan's blocks are all equal, so the count is exact there."""
        target, removed, out = prune_ratio * self.total, 0, []
        for i in sorted(range(1, len(self.blocks) - 1), key=lambda i: -self.blocks[i]):
            if removed >= target or prune_ratio <= 0:
                break
            removed += self.blocks[i]
            out.append(i)
        return tuple(sorted(out))

    def pruned(self, prune_ratio: float) -> int:
        """Parameters left after removing `dropped(prune_ratio)`."""
        return self.total - sum(self.blocks[i] for i in self.dropped(prune_ratio))

    def pruned_kinds(self, prune_ratio: float) -> tuple[str, ...]:
        """The kinds of the blocks left after removing `dropped(prune_ratio)`."""
        drop = set(self.dropped(prune_ratio))
        return tuple(k for i, k in enumerate(self.block_kinds) if i not in drop)


def count_parameters(config: dict) -> Counts:
    """Exact counts of `config`'s model, built on the meta device; blocks in the adapters' order
    (Wan `blocks`; HunyuanVideo dual-stream then single-stream blocks)."""
    model = build_meta(config)
    # the depth layout the adapters prune: HunyuanVideo's token refiner (text tokens only) is not a block there
    units = [u for u in shard_units(model) if "Refiner" not in type(u).__name__]
    return Counts(sum(p.numel() for p in model.parameters()),
                  tuple(sum(p.numel() for p in u.parameters()) for u in units),
                  tuple(type(u).__name__ for u in units))


# ---- tokens and activations (estimate) -------------------------------------------------------------

def video_tokens(geo: Geometry, frames: int, height: int, width: int) -> int:
    """Video tokens after the VAE's compression and the patch size."""
    st, sh, sw = geo.vae_stride
    c = geo.config
    if c["_class_name"] == "WanTransformer3DModel":
        pt, ph, pw = c.get("patch_size", (1, 2, 2))
    else:
        pt, ph, pw = c.get("patch_size_t", 1), c.get("patch_size", 2), c.get("patch_size", 2)
    lt = (frames - 1) // st + 1 if st > 1 else frames
    return math.ceil(lt / pt) * (height // sh // ph) * (width // sw // pw)


def _hidden(config: dict) -> int:
    return config["num_attention_heads"] * config["attention_head_dim"]


def block_bytes_per_token(config: dict, kind: str) -> int:
    """A in the module docstring: activation bytes one block keeps per token for its backward."""
    h = _hidden(config)
    if config["_class_name"] == "WanTransformer3DModel":
        return 28 * h + 4 * config["ffn_dim"]
    f = int(config.get("mlp_ratio", 4.0) * h)
    return 14 * h + 6 * f if "Single" in kind else 20 * h + 4 * f


def _block_tokens(config: dict, tokens: int) -> int:
    """Tokens a block runs over: HunyuanVideo's blocks also carry the text tokens (joint attention)."""
    if config["_class_name"] == "WanTransformer3DModel":
        return tokens
    return tokens + TEXT_TOKENS[config["_class_name"]]


def activation_bytes(config: dict, kinds: tuple[str, ...], tokens: int, samples: int, train: bool,
                     checkpointing: bool) -> int:
    """The activation estimate of the module docstring for one model and `samples` samples."""
    t = _block_tokens(config, tokens) * samples
    per_block = [block_bytes_per_token(config, k) for k in kinds]
    biggest = max(per_block, default=0)
    h = _hidden(config)
    if not train:
        return (2 * biggest + 8 * h) * t
    if checkpointing:
        return (4 * h * len(kinds) + 2 * biggest) * t
    return sum(per_block) * t


# ---- the plan ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanOptions:
    """What the plan is for. `samples_per_gpu`: the micro-batch each GPU runs at once; `gpu_memory_gb`:
    what a GPU offers, compared with the totals in GiB (an "80 GB" H100 reports about 79 GiB)."""
    num_gpus: int = 8
    gpu_memory_gb: float = 80.0
    mixed_precision: str = "bf16"  # bf16 | no
    gradient_checkpointing: bool = True
    offload_params: bool = False
    offload_optimizer: bool = False
    frames: int | None = None  # None: the geometry's default shape
    height: int | None = None
    width: int | None = None
    samples_per_gpu: int = 1
    ema: bool = True  # an EMA of the generator (fp32, sharded)
    prune_ratio: float = 0.3  # fastlightgen's Stage III generator and critic are the pruned model
    method: str = "fastlightgen"  # fastlightgen (pruned G + critic, full real score) | dmd2 (all unpruned)
    stage2_recipe: str = "dpp"  # dpp (the elastic model, its own teacher) | icmd / align (a pruned student + a frozen teacher)


@dataclass(frozen=True)
class StageMemory:
    """One stage's bytes per GPU, in GiB; `host_gib`: what CPU offload moved to the host (per GPU process)."""
    stage: str
    models: str
    weights_gib: float
    grads_gib: float
    optimizer_gib: float
    activations_gib: float
    host_gib: float
    fits: bool

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.grads_gib + self.optimizer_gib + self.activations_gib


@dataclass(frozen=True)
class MemoryPlan:
    """The per-GPU plan of a model's stages; activations are an estimate (module docstring)."""
    model: str
    num_params: int
    tokens: int
    shape: tuple[int, int, int]
    options: PlanOptions
    rows: tuple[StageMemory, ...] = field(default_factory=tuple)

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.rows)


@dataclass
class _Bytes:
    weights: float = 0.0
    grads: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    host: float = 0.0


def _check(opts: PlanOptions) -> None:
    if opts.num_gpus < 1:
        raise ConfigError(f"num_gpus must be >= 1, got {opts.num_gpus}")
    if opts.gpu_memory_gb <= 0:
        raise ConfigError(f"gpu_memory_gb must be > 0, got {opts.gpu_memory_gb}")
    if opts.mixed_precision not in ("bf16", "no"):
        raise ConfigError(f"mixed_precision must be bf16 or no, got {opts.mixed_precision!r}")
    if opts.method not in ("fastlightgen", "dmd2"):
        raise ConfigError(f"method must be fastlightgen or dmd2 for the Stage III plan, got {opts.method!r}")
    if opts.samples_per_gpu < 1:
        raise ConfigError(f"samples_per_gpu must be >= 1, got {opts.samples_per_gpu}")


def _add_trained(b: _Bytes, n: int, opts: PlanOptions, ema: bool) -> None:
    """A trained model of n parameters, sharded over the GPUs (module docstring's conventions)."""
    bf16 = opts.mixed_precision == "bf16"
    w, g, o = (2, 2, 12) if bf16 else (4, 4, 8)
    o += 4 if ema else 0
    share = n / opts.num_gpus
    params, opt = (w + g) * share, o * share
    if opts.offload_params:
        b.host += params
    else:
        b.weights += w * share
        b.grads += g * share
    if opts.offload_optimizer:
        b.host += opt
    else:
        b.optimizer += opt


def _add_frozen(b: _Bytes, n: int, opts: PlanOptions, sharded: bool = True) -> None:
    w = (2 if opts.mixed_precision == "bf16" else 4) * n / (opts.num_gpus if sharded else 1)
    if opts.offload_params and sharded:
        b.host += w
    else:
        b.weights += w


def _gathered(counts: Counts, opts: PlanOptions) -> float:
    """Two blocks' full weights, all-gathered by FSDP2 while they compute (none on one GPU)."""
    if opts.num_gpus == 1 or not counts.blocks:
        return 0.0
    return 2 * max(counts.blocks) * (2 if opts.mixed_precision == "bf16" else 4)


def _row(stage: str, models: str, b: _Bytes, opts: PlanOptions) -> StageMemory:
    r = StageMemory(stage, models, b.weights / GIB, b.grads / GIB, b.optimizer / GIB, b.activations / GIB,
                    b.host / GIB, True)
    return replace(r, fits=r.total_gib <= opts.gpu_memory_gb)


def stage_memory(stage: str, geo: Geometry, counts: Counts, tokens: int, opts: PlanOptions) -> StageMemory:
    """One stage's row: analyze (frozen model, inference, one replica per GPU), stage2 (dpp: one trained
    model, its teacher the same weights), stage3 (generator + critic trained, real score frozen)."""
    cfg, b, s = geo.config, _Bytes(), opts.samples_per_gpu
    ckpt = opts.gradient_checkpointing
    if stage == "analyze":
        _add_frozen(b, counts.total, opts, sharded=False)
        b.activations = activation_bytes(cfg, counts.block_kinds, tokens, s, False, False)
        return _row(stage, "frozen teacher (a replica per GPU)", b, opts)
    if stage == "stage2" and opts.stage2_recipe == "dpp":
        _add_trained(b, counts.total, opts, opts.ema)
        b.weights += _gathered(counts, opts)
        b.activations = (activation_bytes(cfg, counts.block_kinds, tokens, s, True, ckpt)
                         + activation_bytes(cfg, counts.block_kinds, tokens, s, False, False))
        return _row(stage, "dpp: elastic model trained (its teacher = the same weights)", b, opts)
    if stage == "stage2":  # icmd / align: a statically pruned student learns from the frozen teacher
        _add_trained(b, counts.pruned(opts.prune_ratio), opts, opts.ema)
        _add_frozen(b, counts.total, opts)
        b.weights += _gathered(counts, opts)
        b.activations = (activation_bytes(cfg, counts.pruned_kinds(opts.prune_ratio), tokens, s, True, ckpt)
                         + activation_bytes(cfg, counts.block_kinds, tokens, s, False, False))
        return _row(stage, f"{opts.stage2_recipe}: pruned student trained, teacher frozen", b, opts)
    if stage == "stage3":
        ratio = opts.prune_ratio if opts.method == "fastlightgen" else 0.0
        n_student, kinds = counts.pruned(ratio), counts.pruned_kinds(ratio)
        _add_trained(b, n_student, opts, opts.ema)  # generator
        _add_trained(b, n_student, opts, False)  # critic (fake score)
        _add_frozen(b, counts.total, opts)  # real score, sharded, no grads, no optimizer state
        b.weights += _gathered(counts, opts)
        b.activations = (2 * activation_bytes(cfg, kinds, tokens, s, True, ckpt)
                         + activation_bytes(cfg, counts.block_kinds, tokens, 2 * s, False, False))
        return _row(stage, "generator + critic trained, real score frozen", b, opts)
    raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def memory_plan(geo: Geometry, stages: list[str] | tuple[str, ...], opts: PlanOptions = PlanOptions()) -> MemoryPlan:
    """The per-GPU memory plan of `stages` for `geo` under `opts`."""
    _check(opts)
    frames = opts.frames or geo.default_shape[0]
    height = opts.height or geo.default_shape[1]
    width = opts.width or geo.default_shape[2]
    counts = count_parameters(geo.config)
    tokens = video_tokens(geo, frames, height, width)
    rows = tuple(stage_memory(s, geo, counts, tokens, opts) for s in stages)
    return MemoryPlan(geo.name, counts.total, tokens, (frames, height, width), opts, rows)
