"""Tiny real diffusers pipelines, built offline with random weights: what CI runs the real-model paths on.

    folder = write_tiny_pipeline("wan21-t2v", "tiny/wan21")   # a complete WanPipeline folder
    pipe = WanPipeline.from_pretrained(folder)                 # the stock class loads it and generates

Each kind is a COMPLETE pipeline folder of the real classes and config keys, saved with safetensors,
at sizes that run in a second on a CPU; nothing is downloaded:

    kind          pipeline (model_index)                  components
    wan21-t2v     WanPipeline                             WanTransformer3DModel (16 latent channels),
                                                          AutoencoderKLWan (Wan 2.1 layout, z_dim 16, the
                                                          released latents_mean/std), UMT5EncoderModel,
                                                          tokenizer, UniPCMultistepScheduler (flow, shift 3)
    wan22-ti2v    WanPipeline, expand_timesteps=True      as above with the Wan 2.2 VAE layout (z_dim 48,
                  (Wan 2.2 TI2V-5B)                       patch_size 2, is_residual, 16x spatial) and
                                                          48-channel transformer; shift 5
    hunyuan-t2v   HunyuanVideoPipeline                    HunyuanVideoTransformer3DModel,
                                                          AutoencoderKLHunyuanVideo, LlamaModel + tokenizer,
                                                          CLIPTextModel + tokenizer_2,
                                                          FlowMatchEulerDiscreteScheduler (shift 7)

The tokenizers are byte-level BPE models trained (in milliseconds) on a small built-in corpus with
the `tokenizers` library, so any prompt tokenizes without unknown tokens; each carries the special
tokens its family's real tokenizer uses (T5: <pad> </s> <unk>, appended </s>; Llama 3: the header
tokens of HunyuanVideo's prompt template, a leading <|begin_of_text|>; CLIP: <|startoftext|> ...
<|endoftext|>, padded with <|endoftext|>), wrapped in transformers' PreTrainedTokenizerFast and
saved so `AutoTokenizer.from_pretrained` loads them. HunyuanVideo's default prompt template crops
its first 95 tokens (the real Llama tokenizer's length of the template's system part); the tiny
tokenizer spells that part in more than 95 tokens, so the crop never reaches the prompt.

Weights are random from `seed` (the global RNG is left as it was) and the transformer blocks are
perturbed so every block changes its input: pruning and importance analysis see real differences.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from fastlight.errors import InputError
from fastlight.fileio import atomic_dir, atomic_write_json

KINDS = ("wan21-t2v", "wan22-ti2v", "hunyuan-t2v")
BLOCK_PERTURB = 0.05  # std of the noise added to each block's parameters (see the module doc)

# the tokenizers' training text: caption-like sentences (ASCII; bytes outside it still tokenize)
CORPUS = (
    "a red circle moves left quickly across a white background",
    "a blue square stays still while a green triangle moves up slowly",
    "the camera pans across a quiet beach at sunset, waves rolling in",
    "a dog runs through a field of tall grass on a sunny afternoon",
    "close-up of rain drops falling on a window, city lights blurred behind",
    "an astronaut walks on the surface of the moon, earth rising in the sky",
    "two cats play with a ball of yarn on a wooden floor",
    "time-lapse of clouds drifting over snowy mountains",
    "a chef slices vegetables in a busy kitchen, steam rising from pots",
    "a paper boat floats down a stream in the forest",
)
WAN_TEXT_LEN = 512  # WanPipeline's default max_sequence_length


# ---------------------------------------------------------------------------------- tokenizers
def _bpe(specials: list[str], template: tuple[str, str] | None, vocab_size: int = 384):
    """A byte-level BPE `tokenizers.Tokenizer` trained on CORPUS; specials get ids 0, 1, ...;
    `template`: (single, pair) post-processing templates naming the specials they add."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    if template is not None:
        used = [s for s in specials if s in template[0] or s in template[1]]
        tok.post_processor = processors.TemplateProcessing(
            single=template[0], pair=template[1], special_tokens=[(s, tok.token_to_id(s)) for s in used])
    return tok


def t5_tokenizer(max_length: int = WAN_TEXT_LEN):
    """T5/UMT5-style: <pad>=0, </s>=1 appended to every text, <unk>=2."""
    from transformers import PreTrainedTokenizerFast

    tok = _bpe(["<pad>", "</s>", "<unk>"], ("$A </s>", "$A </s> $B </s>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<pad>"]


def llama_tokenizer():
    """Llama-3-style: <|begin_of_text|> prepended, the chat header tokens HunyuanVideo's template uses, <pad>."""
    from transformers import PreTrainedTokenizerFast

    tok = _bpe(LLAMA_SPECIALS, ("<|begin_of_text|> $A", "<|begin_of_text|> $A $B"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   pad_token="<pad>", model_max_length=1024)


def clip_tokenizer():
    """CLIP-style: <|startoftext|> text <|endoftext|>, padded with <|endoftext|>, 77 tokens."""
    from transformers import PreTrainedTokenizerFast

    tok = _bpe(["<|startoftext|>", "<|endoftext|>"],
               ("<|startoftext|> $A <|endoftext|>", "<|startoftext|> $A <|endoftext|> $B <|endoftext|>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=77)


# ---------------------------------------------------------------------------------- components
def _seeded(seed: int, build):
    """build() with the global CPU RNG seeded `seed`, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _perturb_blocks(blocks: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in blocks.parameters():
            p.add_(BLOCK_PERTURB * torch.randn(p.shape, generator=g))


def _umt5(vocab_size: int, d_model: int):
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=32,
                     feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                     decoder_start_token_id=0)
    return UMT5EncoderModel(cfg).eval()


def _wan_transformer(in_channels: int, text_dim: int, seed: int):
    from diffusers import WanTransformer3DModel

    m = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=in_channels,
        out_channels=in_channels, text_dim=text_dim, freq_dim=32, ffn_dim=32, num_layers=4, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    _perturb_blocks(m.blocks, seed)
    return m.eval()


def _wan21_vae():
    from diffusers import AutoencoderKLWan

    # Wan 2.1 layout at tiny width: 3 spatial halvings (8x), 2 temporal (4x), z_dim 16 with the
    # released latents_mean / latents_std (AutoencoderKLWan's defaults)
    return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                            temperal_downsample=[False, True, True]).eval()


def _wan22_vae():
    from diffusers import AutoencoderKLWan

    # Wan 2.2 TI2V layout: 2x2 pixel patchify (12 input channels), residual up/down blocks, z_dim 48,
    # 16x spatial and 4x temporal compression; tiny widths, made-up (but not trivial) latent statistics
    z = 48
    mean = [round(-0.2 + 0.4 * i / (z - 1), 4) for i in range(z)]
    std = [round(0.5 + 1.0 * ((7 * i) % z) / (z - 1), 4) for i in range(z)]
    return AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            attn_scales=[], temperal_downsample=[False, True, True], is_residual=True,
                            in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
                            scale_factor_temporal=4, latents_mean=mean, latents_std=std).eval()


def _unipc(shift: float):
    from diffusers import UniPCMultistepScheduler

    # as the released Wan Diffusers repos ship it
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                   num_train_timesteps=1000, solver_order=2, solver_type="bh2",
                                   final_sigmas_type="zero")


def _wan_pipeline(kind: str, seed: int):
    from diffusers import WanPipeline

    tokenizer = t5_tokenizer()
    text_dim = 32
    text_encoder = _seeded(seed + 1, lambda: _umt5(len(tokenizer), text_dim))
    if kind == "wan21-t2v":
        vae, channels, shift, extra = _seeded(seed + 2, _wan21_vae), 16, 3.0, {}
    else:
        vae, channels, shift, extra = _seeded(seed + 2, _wan22_vae), 48, 5.0, {"expand_timesteps": True}
    transformer = _seeded(seed + 3, lambda: _wan_transformer(channels, text_dim, seed + 4))
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=_unipc(shift),
                       transformer=transformer, **extra)


def _hunyuan_pipeline(seed: int):
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    tokenizer, tokenizer_2 = llama_tokenizer(), clip_tokenizer()
    llama_dim, clip_dim = 32, 16
    llama_cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=llama_dim, intermediate_size=64,
                            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                            max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # the pipeline reads hidden_states[-3]: three layers so that is a real layer's output
    text_encoder = _seeded(seed + 1, lambda: LlamaModel(llama_cfg).eval())
    clip_cfg = CLIPTextConfig(vocab_size=len(tokenizer_2), hidden_size=clip_dim, intermediate_size=32,
                              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                              projection_dim=clip_dim, bos_token_id=tokenizer_2.bos_token_id,
                              eos_token_id=tokenizer_2.eos_token_id, pad_token_id=tokenizer_2.pad_token_id)
    text_encoder_2 = _seeded(seed + 2, lambda: CLIPTextModel(clip_cfg).eval())
    vae = _seeded(seed + 3, lambda: AutoencoderKLHunyuanVideo(
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4, up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, act_fn="silu", norm_num_groups=4,
        scaling_factor=0.476986, spatial_compression_ratio=8, temporal_compression_ratio=4,
        mid_block_add_attention=True).eval())

    def transformer():
        m = HunyuanVideoTransformer3DModel(
            in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=8, num_layers=2,
            num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
            qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=llama_dim, pooled_projection_dim=clip_dim,
            rope_theta=256.0, rope_axes_dim=(2, 2, 4))
        _perturb_blocks(m.transformer_blocks, seed + 5)
        _perturb_blocks(m.single_transformer_blocks, seed + 6)
        return m.eval()

    return HunyuanVideoPipeline(text_encoder=text_encoder, tokenizer=tokenizer,
                                transformer=_seeded(seed + 4, transformer),
                                vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)


def build_tiny_pipeline(kind: str, seed: int = 0):
    """The stock pipeline object of `kind` (KINDS) with tiny random components (not saved)."""
    if kind not in KINDS:
        raise InputError(f"unknown tiny pipeline kind {kind!r}; choose one of {', '.join(KINDS)}")
    return _hunyuan_pipeline(seed) if kind == "hunyuan-t2v" else _wan_pipeline(kind, seed)


def write_tiny_pipeline(kind: str, out: str | Path, seed: int = 0) -> Path:
    """Write the tiny pipeline `kind` (KINDS) as a complete diffusers folder at `out` (safetensors;
    replaced atomically if it exists); return `out`."""
    pipe = build_tiny_pipeline(kind, seed)
    out = Path(out)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        _portable_tokenizer_class(tmp)
    return out


def _portable_tokenizer_class(folder: Path) -> None:
    """model_index.json names the tokenizers by transformers 5's backend class (TokenizersBackend);
    name them PreTrainedTokenizerFast, its public alias, which every transformers version has."""
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    for name, value in index.items():
        if isinstance(value, list) and value == ["transformers", "TokenizersBackend"]:
            index[name] = ["transformers", "PreTrainedTokenizerFast"]
    atomic_write_json(index_file, index)
