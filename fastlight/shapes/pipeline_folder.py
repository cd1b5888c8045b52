"""The Shapes world as a real diffusers pipeline folder: what the next embedded teacher will be.

    folder = write_shapes_pipeline("runs/shapes_pipe")          # random-weight latent transformer
    import fastlight.shapes.text_model                           # (diffusers imports no module a folder names)
    pipe = WanPipeline.from_pretrained(folder)                   # the stock class loads it and generates
    video = pipe("a red circle moving left quickly", num_frames=9, height=64, width=64).frames[0]

A complete Wan 2.2 TI2V-layout folder (`WanPipeline`, `expand_timesteps=True`, like
fastlight/models/tiny_pipelines.py's wan22-ti2v), so it takes exactly the real-model code path
(`fastlight run configs/wan/*.yaml teacher=FOLDER`, synthesize, LatentShardSource, evaluate.real,
pipeline_bench, export):

    model_index.json   WanPipeline, expand_timesteps true, boundary_ratio null
    scheduler/         UniPCMultistepScheduler (flow_prediction, flow sigmas, shift SHIFT) as the released
                       Wan Diffusers repos ship it
    vae/               the shipped Shapes AutoencoderKLWan (fastlight/shapes/clips.py `vae_dir()`, the
                       `shapes-vae` preset) in float32: 64x64 RGB frames <-> 16 x 8 x 8 latents, 4x in time
                       (9 frames -> 3 latent frames, 17 -> 5)
    text_encoder/      ShapesPhraseEncoder (fastlight/shapes/text_model.py): the phrase tokens (32 wide)
    tokenizer/         the word-level Shapes tokenizer (PreTrainedTokenizerFast) and fastlight_text.json, the
                       pipeline's text length (`text_len`, default `text_model.short_text_len(world)`: v1 16, v2
                       24 tokens, every prompt whole; fastlight.data.latents.pipeline_text_len reads it)
    transformer/       WanTransformer3DModel, 16 latent channels in and out, text_dim 32 (LATENT_TRANSFORMER)

Latent transformer: 16 blocks of width 64 (2 heads x 32), patch (1, 2, 2): a 9-frame clip is 3 x 4 x 4
= 48 tokens. Measured on this machine's 2 cores (16 x 3 x 8 x 8 latents): 0.31 s per training step at
batch 16 and 22 ms per call at batch 1 (patch (1, 1, 1): 1.06 s and 41 ms). `transformer=None` gives
random weights (seeded); otherwise pass a WanTransformer3DModel or a transformer folder to copy.

Text length: the stock WanPipeline cuts and zero-pads the prompt to `max_sequence_length` (512 by
default). A Shapes prompt is at most 14 (v1) / 21 (v2) tokens and its encoder emits one token per object,
so 512 feeds ~509 identical zero tokens to every cross-attention (and doubles a training step). The
folder records a short length instead, and every fastlight verb that encodes text or calls the pipeline
passes it (synthesize, the shards, evaluate, bench --pipeline, `fastlight run`); a direct caller passes
`max_sequence_length=pipeline_text_len(folder)`. Shorter than the prompt would cut it, so it is refused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from fastlight.data.latents import write_pipeline_text_len
from fastlight.errors import InputError, ModelError, PluginError
from fastlight.fileio import atomic_dir, atomic_write_json
from fastlight.models.presets import cache_dir
from fastlight.models.tiny_pipelines import _portable_tokenizer_class, _seeded
from fastlight.plugins import component
from fastlight.shapes import clips, text, text_model, world as shapes

SHIFT = 3.0  # the flow shift of the Shapes teacher's sampler (configs/shapes/pretrain.yaml)
LATENT_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=32,
    in_channels=16,
    out_channels=16,
    text_dim=text.TEXT_DIM,
    freq_dim=64,
    ffn_dim=256,
    num_layers=16,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
VAE_PRESET = "shapes-vae"
PRESET_NAME = "shapes-pipeline-random"
TEACHER_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes_latent_teacher"


def latent_transformer(seed: int = 0, **overrides):
    """A random-weight latent WanTransformer3DModel (LATENT_TRANSFORMER with `overrides`), seeded."""
    from diffusers import WanTransformer3DModel

    cfg = {**LATENT_TRANSFORMER, **overrides}
    if cfg["in_channels"] != 16 or cfg["text_dim"] != text.TEXT_DIM:
        raise InputError(f"the Shapes pipeline's transformer reads 16 latent channels and {text.TEXT_DIM}-wide "
                         f"phrase tokens; got in_channels {cfg['in_channels']}, text_dim {cfg['text_dim']}")
    return _seeded(seed, lambda: WanTransformer3DModel(**cfg).eval())


def _resolve_vae(vae) -> Path:
    """A VAE preset name (fastlight.vaes, e.g. shapes-vae) or a folder -> the folder."""
    if vae == VAE_PRESET:
        return clips.vae_dir()  # no entry-point lookup needed for the shipped one
    folder = Path(vae)
    if not (folder / "config.json").is_file():
        try:
            folder = Path(component("fastlight.vaes", str(vae))())
        except PluginError:
            raise ModelError(f"vae {vae!r} is neither a VAE folder (config.json) nor a registered VAE preset; "
                             f"pass {VAE_PRESET} or an AutoencoderKLWan folder") from None
    return folder


def _load_vae(folder: Path):
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=torch.float32)  # the asset is float16 on disk
    if vae.config.z_dim != 16:
        raise ModelError(f"VAE {folder} has {vae.config.z_dim} latent channels; the Shapes pipeline's transformer "
                         "reads 16 (the shipped shapes-vae)")
    return vae.float().eval()


def _load_transformer(transformer, seed: int):
    from diffusers import WanTransformer3DModel

    if transformer is None:
        return latent_transformer(seed)
    if isinstance(transformer, (str, Path)):
        folder = Path(transformer)
        if (folder / "transformer" / "config.json").is_file():
            folder = folder / "transformer"
        if not (folder / "config.json").is_file():
            raise ModelError(f"transformer {transformer} has no config.json; pass a WanTransformer3DModel folder")
        transformer = WanTransformer3DModel.from_pretrained(str(folder), torch_dtype=torch.float32)
    cfg = transformer.config
    if cfg.in_channels != 16 or cfg.text_dim != text.TEXT_DIM:
        raise ModelError(f"the transformer reads {cfg.in_channels} channels and {cfg.text_dim}-wide text; the Shapes "
                         f"pipeline needs 16 and {text.TEXT_DIM} (a latent Shapes transformer, not the pixel-space "
                         "shapes-teacher)")
    return transformer.eval()


def build_shapes_pipeline(transformer=None, vae=VAE_PRESET, world: shapes.WorldConfig | str = "v1",
                          shift: float = SHIFT, seed: int = 0):
    """The stock WanPipeline object of the Shapes world (not saved): see the module doc. `world` (a
    WorldConfig or a name of shapes.WORLDS) decides the text encoder's phrase slots and speed words."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    if isinstance(world, str) and world not in shapes.WORLDS:
        raise InputError(f"unknown Shapes world {world!r}; use one of {', '.join(shapes.WORLDS)}")
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                        num_train_timesteps=1000, solver_order=2, solver_type="bh2",
                                        final_sigmas_type="zero")
    return WanPipeline(tokenizer=text_model.build_tokenizer(), text_encoder=text_model.build_encoder(world),
                       vae=_load_vae(_resolve_vae(vae)), scheduler=scheduler,
                       transformer=_load_transformer(transformer, seed), expand_timesteps=True)


def write_shapes_pipeline(out: str | Path, transformer=None, vae=VAE_PRESET, world: shapes.WorldConfig | str = "v1",
                          shift: float = SHIFT, seed: int = 0, text_len: int | None = None) -> Path:
    """Write the Shapes world as a complete diffusers pipeline folder at `out` (safetensors; replaced
    atomically if it exists); return `out`. `transformer`: None (random, from `seed`), a
    WanTransformer3DModel or its folder; `vae`: a VAE preset name or an AutoencoderKLWan folder;
    `text_len`: the text length it records (default `text_model.short_text_len(world)`; 512 for the
    stock default), at least the world's longest prompt."""
    text_len = check_text_len(text_len, world)
    pipe = build_shapes_pipeline(transformer, vae, world, shift, seed)
    out = Path(out)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        _portable_tokenizer_class(tmp)
        _check_index(tmp)
        write_pipeline_text_len(tmp, text_len)
    return out


def check_text_len(text_len: int | None, world: shapes.WorldConfig | str = "v1") -> int:
    """`text_len`, or the world's short default when None; InputError when it would cut a prompt."""
    if isinstance(world, str) and world not in shapes.WORLDS:
        raise InputError(f"unknown Shapes world {world!r}; use one of {', '.join(shapes.WORLDS)}")
    if text_len is None:
        return text_model.short_text_len(world)
    need = text_model.prompt_tokens(world)
    if isinstance(text_len, bool) or not isinstance(text_len, int) or text_len < need:
        raise InputError(f"text_len must be a whole number >= {need} (the longest prompt of this world, in tokens: "
                         f"a shorter one cuts prompts), got {text_len!r}; the default is "
                         f"{text_model.short_text_len(world)}, the stock pipeline's 512")
    return text_len


def _check_index(folder: Path) -> None:
    """The text encoder is recorded under its module path, the name diffusers' loader resolves."""
    index = json.loads((folder / "model_index.json").read_text())
    want = [text_model.__name__, text_model.ShapesPhraseEncoder.__name__]
    if index.get("text_encoder") != want:  # a diffusers whose save_pretrained names it otherwise: write the
        index["text_encoder"] = want       # module path its loader resolves (and the plug-in entry point names)
        atomic_write_json(folder / "model_index.json", index)


def _builder_tag(*assets: Path) -> str:
    """A short hash of what decides a preset's bytes: this builder, the text model, the VAE (and `assets`,
    e.g. the shipped transformer), the libraries."""
    import diffusers
    import transformers

    h = hashlib.sha256()
    for f in (Path(__file__), Path(text_model.__file__), Path(text.__file__)):
        h.update(f.read_bytes())
    for folder in (clips.vae_dir(), *assets):
        for f in sorted(folder.glob("*")):
            if f.suffix in (".json", ".safetensors"):
                h.update(f"{f.name}:{f.stat().st_size}:{hashlib.sha256(f.read_bytes()).hexdigest()}".encode())
    h.update(f"{diffusers.__version__}/{transformers.__version__}".encode())
    return h.hexdigest()[:10]


def shapes_pipeline_random() -> Path:
    """The `shapes-pipeline-random` preset: the Shapes pipeline with a random latent transformer, built
    once into $FASTLIGHT_CACHE/shapes_pipelines/random-TAG."""
    folder = cache_dir() / "shapes_pipelines" / f"random-{_builder_tag()}"
    if not (folder / "model_index.json").is_file():
        write_shapes_pipeline(folder)
    return folder


def shipped_teacher_world() -> shapes.WorldConfig:
    """The world the shipped latent teacher was trained in (its manifest's `world`: v2)."""
    manifest = TEACHER_DIR / "manifest.json"
    if not manifest.is_file():
        raise ModelError(f"the shipped latent Shapes teacher is missing ({TEACHER_DIR}); reinstall fastlight")
    name = json.loads(manifest.read_text())["world"]["world"]
    return shapes.WORLDS[name]


def shapes_pipeline() -> Path:
    """The `shapes-pipeline` preset: the Shapes pipeline folder with the shipped latent teacher
    (fastlight/assets/shapes_latent_teacher, trained by configs/shapes/latent_pretrain.yaml in the v2 world),
    built once into $FASTLIGHT_CACHE/shapes_pipelines/teacher-TAG (the embedded default's teacher)."""
    world = shipped_teacher_world()
    folder = cache_dir() / "shapes_pipelines" / f"teacher-{_builder_tag(TEACHER_DIR)}"
    if not (folder / "model_index.json").is_file():
        write_shapes_pipeline(folder, transformer=TEACHER_DIR, world=world)
    return folder
