"""Precomputed latents + text embeddings from real videos, stored as safetensors shards.

    index = preprocess("videos/", "captions.jsonl", "Wan2.1-T2V-1.3B-Diffusers", "shards/",
                       num_frames=81, buckets=[(480, 832), (832, 480)], text_embeds="text.safetensors")
    data = LatentShards("shards/")
    item = data[0]                      # {"x0": (C, F', H', W'), "text": (L, D), "text_mask": (L,)}
    batch = data.batch([0, 1, 2])       # same keys with a leading batch axis (one bucket per batch)
    source = LatentShardSource("shards/", batch_size=8, seed=0)   # the `latents` data source
    b = source.batch(step, rank, num_processes)                   # {x0, text, text_mask, extra?}, one bucket
    source.null_text                                              # (1, L0, D) the negative prompt's, or None
    check_shards_match("shards/", "Wan2.1-T2V-1.3B-Diffusers")   # DataError if made by another VAE / width

Per video: decode with PyAV (first `num_frames` frames, every `frame_stride`-th), pick the bucket
(H, W) with the closest aspect ratio, resize so the bucket is covered and centre-crop, scale to
[-1, 1], encode with the diffusers VAE (posterior mode: deterministic) and normalise the latents
the way the diffusers pipelines do (Wan: (z - latents_mean) / latents_std per channel;
HunyuanVideo: z * scaling_factor). A Wan VAE needs num_frames = 1 + 4k (1 + k * 2^#temporal
downsamples in general) and H, W divisible by its spatial factor (8 for the released VAEs).

Text: either `text_embeds`, a safetensors file that maps a caption id (or the video's file stem)
to an (L, D) embedding, or `text_encoder`, a transformers T5/UMT5 encoder folder (or a diffusers
pipeline folder holding text_encoder/ and tokenizer/), run on the captions like the Wan pipeline
(pad to `max_text_len`, zero the padded positions); a HunyuanVideo pipeline folder runs its Llama +
CLIP like HunyuanVideoPipeline (`_HunyuanEmbeds`; the pooled CLIP embedding is stored as
`extra.pooled`). Embeddings are zero-padded to a common L and a `text_mask` (1 = real token) is
stored with them. With an encoder, the negative prompt "" is encoded the same way into
`null.safetensors`: the null the stock pipeline's CFG uses, which recipes train CFG dropout against.

Layout of `out_dir`:
    latents_00000.safetensors   x0 (N, C, F', H', W') float32, text (N, L, D), text_mask (N, L),
                                extra.<name> (N, ...) (HunyuanVideo: extra.pooled (N, P))
    null.safetensors            null_text (1, L0, D), extra.<name> (1, ...): the negative prompt's embedding
    index.json                  {"shards": [{file, num_samples, bucket, sha256}], "videos": [...],
                                 "skipped": [{file, reason}], "vae", "vae_fingerprint", "num_frames",
                                 "buckets", "null"?: {file, prompt, tokens, extra, sha256}, ...}
`check_shards_match(shards, pipeline)` refuses shards made by another VAE (the fingerprint) or of
another latent channel count / text width than the pipeline's transformer.

The text length (`pipeline_text_len`): the tokens a prompt is cut and zero-padded to, WanPipeline's
`max_sequence_length`. It is the pipeline folder's own record, `tokenizer/fastlight_text.json`
{"max_sequence_length": L}, because the text side of a pipeline decides it (the tokenizer truncates at
L, the encoder's output is padded to L): every model trained on that pipeline's shards was trained at
L, and an export links the teacher's tokenizer/ and so carries it unchanged. A folder without the
record (every real Wan / HunyuanVideo download) keeps the stock default (512 / 256): nothing changes
for them. Shards record the length they were encoded at (index.json `text.length`) and store the
embeddings padded to it; `LatentShardSource(text_pad={lengths: [16, 512], probs: [0.9, 0.1]})` pads
each batch to a length drawn from that set (see `TextPad`), so a model trained at a short length
also serves a caller of the stock pipeline who passes no max_sequence_length (512 zero tokens).
A shard holds samples of one bucket only. Shard files and the index are written atomically
(temporary name + rename); shards left from an earlier run in the same folder are removed.
Corrupt, unreadable, too-short or uncaptioned videos are skipped and listed with a reason; they
never stop the run. Each shard file has the keys `fastlight.analyze.calib.load_latents` reads.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from fastlight.data.source import local_batch_size, stream_generator
from fastlight.errors import DataError, MissingFileError, ModelError, check_dir_creatable
from fastlight.data.video import read_video
from fastlight.fileio import atomic_write_bytes, atomic_write_json, read_json_object, read_safetensors, sha256_file
from fastlight.models.load import PIPELINE_COMPONENTS, import_pipeline_components
from fastlight.models.weights import load_pretrained
from fastlight.plugins import component, registered

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
INDEX_NAME = "index.json"
MADE_NAME = ".made.json"  # when and how fast the folder was written: hidden, so not part of its content identity
SHARD_PATTERN = "latents_{:05d}.safetensors"
NULL_NAME = "null.safetensors"  # the negative prompt's embedding {"null_text": (1, L0, D), "extra.<name>": (1, ...)}
EXTRA_PREFIX = "extra."  # shard keys of architecture-specific conditioning (HunyuanVideo: extra.pooled)
NEGATIVE_PROMPT = ""  # the stock pipelines' default negative prompt (WanPipeline, HunyuanVideoPipeline)
HUNYUAN_TEXT_LEN = 256  # HunyuanVideoPipeline's max_sequence_length (Llama tokens after the template crop)
HUNYUAN_SKIP_LAYERS = 2  # HunyuanVideoPipeline takes Llama's hidden_states[-(2 + 1)]
CLIP_TEXT_LEN = 77
DEFAULT_BUCKETS = ((480, 832), (832, 480), (480, 480))
TEXT_LEN_FILE = "fastlight_text.json"  # in a pipeline's tokenizer/: {"max_sequence_length": L}
TEXT_LEN_KEY = "max_sequence_length"
_CAPTION_ID_KEYS = ("id", "video", "file", "path", "name")
_CAPTION_TEXT_KEYS = ("caption", "text", "prompt")


def write_made(folder: Path, **info) -> None:
    """FOLDER/.made.json: the writing's time (and e.g. its speed) kept beside index.json, not in it, so that the
    same data written twice has the same content identity (fastlight.train.checkpoint.input_identity skips
    hidden files) and a resumed stage keeps its checkpoints."""
    atomic_write_json(Path(folder) / MADE_NAME, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info})


# ----------------------------------------------------------------------------- small helpers


def _save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write a safetensors file atomically; return its sha256."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- captions / text


def read_captions(path: str | Path) -> dict[str, str]:
    """captions.jsonl -> {id: caption}. Each line: {"video" | "id" | "file": ..., "caption" | "text" | "prompt": ...}.

    An id that names a file ("clips/a.mp4") is reduced to its stem ("a"), so ids match video stems.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"captions file {path} does not exist; pass --captions a .jsonl with one "
                        '{"video": "NAME.mp4", "caption": "..."} per line')
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n} is not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{n} must be a JSON object like {{\"video\": \"a.mp4\", \"caption\": \"...\"}}")
        key = next((rec[k] for k in _CAPTION_ID_KEYS if k in rec), None)
        text = next((rec[k] for k in _CAPTION_TEXT_KEYS if k in rec), None)
        if key is None or not isinstance(text, str):
            raise DataError(f"{path}:{n} needs a video id ({'/'.join(_CAPTION_ID_KEYS)}) and a caption "
                            f"({'/'.join(_CAPTION_TEXT_KEYS)}); got keys {sorted(rec)}")
        out[Path(str(key)).stem] = text
    return out


class _FileEmbeds:
    """Text embeddings from a safetensors file {id: (L, D)}; looked up by caption id / video stem."""

    def __init__(self, path: str | Path):
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise DataError(f"text embeddings file {path} does not exist; pass a .safetensors mapping each "
                            "video stem to an (L, D) tensor, or --text-encoder")
        try:
            self._f = safe_open(str(path), framework="pt")
            keys = list(self._f.keys())
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise DataError(f"text embeddings file {path} is not a readable safetensors file ({e})") from None
        self.path = path
        self.keys = set(keys)
        dims, lengths = set(), []
        for k in keys:
            shape = self._f.get_slice(k).get_shape()
            if len(shape) != 2:
                raise DataError(f"text embeddings file {path}: entry {k!r} must be (L, D), got shape {tuple(shape)}")
            lengths.append(shape[0])
            dims.add(shape[1])
        if len(dims) > 1:
            raise DataError(f"text embeddings file {path}: entries have different widths D {sorted(dims)}")
        self.max_len = max(lengths, default=0)

    def __call__(self, key: str, caption: str | None) -> torch.Tensor | None:
        return self._f.get_tensor(key).float() if key in self.keys else None

    def encode(self, key: str, caption: str | None) -> tuple[torch.Tensor | None, dict]:
        """(the (L, D) entry or None, no extras)."""
        return self(key, caption), {}


class _EncoderEmbeds:
    """Text embeddings computed by a transformers T5 / UMT5 encoder (loaded lazily), Wan-pipeline style."""

    def __init__(self, folder: str | Path, max_len: int, device: str | torch.device):
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(folder)
        enc_dir, tok_dir = folder, folder
        if (folder / "text_encoder").is_dir():  # a diffusers pipeline folder
            enc_dir, tok_dir = folder / "text_encoder", folder / "tokenizer"
            import_pipeline_components(folder)  # a plug-in encoder (Shapes) registers its config with AutoConfig
        if not (enc_dir / "config.json").exists():
            raise DataError(f"text encoder folder {enc_dir} has no config.json; pass a transformers T5/UMT5 "
                            "encoder folder or a diffusers pipeline folder with text_encoder/ and tokenizer/")
        cfg = AutoConfig.from_pretrained(enc_dir)
        if cfg.model_type == "umt5":
            from transformers import UMT5EncoderModel as Model
        elif cfg.model_type in ("t5", "mt5"):
            from transformers import T5EncoderModel as Model
        else:
            from transformers import AutoModel as Model
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        self.model = load_pretrained(Model, enc_dir, "text encoder folder", DataError).to(device).eval()
        self.device = device
        self.max_len = max_len

    @torch.no_grad()
    def __call__(self, key: str, caption: str | None) -> torch.Tensor | None:
        if caption is None:
            return None
        tok = self.tokenizer([caption], padding="max_length", max_length=self.max_len, truncation=True,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        hidden = self.model(ids, attention_mask=mask).last_hidden_state[0].float().cpu()  # (L, D)
        n = int(mask.sum())
        return hidden[:n]  # padding is re-added (as zeros) when stacking, like the Wan pipeline

    def encode(self, key: str, caption: str | None) -> tuple[torch.Tensor | None, dict]:
        """(the caption's (l, D) embedding or None, no extras)."""
        return self(key, caption), {}


def is_hunyuan_pipeline(folder: str | Path) -> bool:
    """Whether `folder` is a diffusers HunyuanVideo pipeline folder (model_index.json says so)."""
    f = Path(folder) / "model_index.json"
    if not f.is_file():
        return False
    return read_json_object(f, DataError, "re-download the pipeline").get("_class_name") == "HunyuanVideoPipeline"


class _HunyuanEmbeds:
    """HunyuanVideo's two text encoders, as HunyuanVideoPipeline.encode_prompt runs them: Llama on the
    prompt in the pipeline's prompt template (DEFAULT_PROMPT_TEMPLATE), `max_len` tokens after its
    `crop_start` crop, the hidden state `HUNYUAN_SKIP_LAYERS` layers below the top, kept where the
    attention mask is 1 (the mask is re-made when padding); CLIP's pooled output on the bare prompt
    (77 tokens) -> extra["pooled"] (P,)."""

    def __init__(self, folder: str | Path, max_len: int, device: str | torch.device):
        from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
        from transformers import AutoModel, AutoTokenizer, CLIPTextModel

        folder = Path(folder)
        for sub in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"):
            if not (folder / sub).is_dir():
                raise DataError(f"HunyuanVideo pipeline {folder} has no {sub}/ (the Llama and CLIP text encoders "
                                "encode the prompts); copy text_encoder/, tokenizer/, text_encoder_2/ and tokenizer_2/ "
                                "from the original pipeline")
        self.template = DEFAULT_PROMPT_TEMPLATE
        self.tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        self.llama = load_pretrained(AutoModel, folder / "text_encoder", "text encoder folder", DataError).to(device).eval()
        self.tokenizer_2 = AutoTokenizer.from_pretrained(folder / "tokenizer_2")
        self.clip = load_pretrained(CLIPTextModel, folder / "text_encoder_2", "text encoder folder",
                                    DataError).to(device).eval()
        self.device, self.max_len = device, max_len

    @torch.no_grad()
    def encode(self, key: str, caption: str | None) -> tuple[torch.Tensor | None, dict]:
        """(the (l, D) Llama embedding of the caption's valid tokens, {"pooled": (P,)}); (None, {}) without a caption."""
        if caption is None:
            return None, {}
        crop = self.template["crop_start"]
        tok = self.tokenizer([self.template["template"].format(caption)], max_length=self.max_len + crop,
                             padding="max_length", truncation=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        hidden = self.llama(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = hidden.hidden_states[-(HUNYUAN_SKIP_LAYERS + 1)][0, crop:].float().cpu()  # (max_len, D)
        emb = hidden[mask[0, crop:].cpu().bool()]  # the valid tokens, in order
        tok2 = self.tokenizer_2([caption], padding="max_length", max_length=CLIP_TEXT_LEN, truncation=True,
                                return_tensors="pt")
        pooled = self.clip(tok2.input_ids.to(self.device), output_hidden_states=False).pooler_output[0]
        return emb, {"pooled": pooled.float().cpu()}


def text_encoder_for(folder: str | Path, max_len: int | None, device):
    """The text encoder of a pipeline (or T5/UMT5) folder: HunyuanVideo's Llama + CLIP for a HunyuanVideo
    pipeline, else the Wan-style T5/UMT5 encoder. max_len None: the family's default (HUNYUAN_TEXT_LEN, 512)."""
    if is_hunyuan_pipeline(folder):
        return _HunyuanEmbeds(folder, max_len or HUNYUAN_TEXT_LEN, device)
    return _EncoderEmbeds(folder, max_len or 512, device)


def save_null(out_dir: Path, text: torch.Tensor, extra: dict[str, torch.Tensor]) -> dict:
    """Write the negative prompt's embedding, (1, L0, D) text and (1, ...) extras, to out_dir/NULL_NAME;
    return the index record naming it."""
    tensors = {"null_text": text.reshape(1, -1, text.shape[-1]).float()}
    tensors.update({EXTRA_PREFIX + k: v.reshape(1, *v.shape[-1:]).float() for k, v in extra.items()})
    sha = _save_tensors_atomic(out_dir / NULL_NAME, tensors)
    return {"file": NULL_NAME, "prompt": NEGATIVE_PROMPT, "tokens": int(tensors["null_text"].shape[1]),
            "extra": sorted(extra), "sha256": sha}


def _text_len_file(pipeline: str | Path) -> Path:
    return Path(pipeline) / "tokenizer" / TEXT_LEN_FILE


def pipeline_text_len(pipeline: str | Path) -> int | None:
    """The text length a pipeline folder records for itself (tokenizer/fastlight_text.json, see the
    module doc), or None when it records none: the stock pipeline's own default applies."""
    f = _text_len_file(pipeline)
    if not f.is_file():
        return None
    fix = f'rewrite it as {{"{TEXT_LEN_KEY}": 512}} (or delete it for the stock default)'
    value = read_json_object(f, DataError, fix).get(TEXT_LEN_KEY)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{f}: {TEXT_LEN_KEY} must be a whole number >= 1, got {value!r}; {fix}")
    return value


def write_pipeline_text_len(pipeline: str | Path, length: int) -> Path:
    """Record `length` as the pipeline folder's text length (atomically); return the file."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise DataError(f"a text length must be a whole number >= 1, got {length!r}")
    f = _text_len_file(pipeline)
    if not f.parent.is_dir():
        raise DataError(f"pipeline {pipeline} has no tokenizer/ to record its text length in")
    return atomic_write_json(f, {TEXT_LEN_KEY: length, "why": "the prompt tokens kept and zero-padded to: pass it "
                                 "as the stock pipeline's max_sequence_length (fastlight's verbs do)"})


def vae_fingerprint(vae_dir: str | Path) -> str:
    """A short id of a VAE folder: sha256 over its config and its weight files' sha256."""
    vae_dir = Path(vae_dir)
    h = hashlib.sha256((vae_dir / "config.json").read_bytes())
    for f in sorted(vae_dir.glob("*.safetensors")):
        h.update(f"{f.name}:{sha256_file(f)}".encode())
    return h.hexdigest()[:16]


def _pad_text(emb: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(l, D) -> ((length, D) zero-padded, (length,) mask); truncates if l > length."""
    emb = emb[:length]
    out = torch.zeros(length, emb.shape[1], dtype=torch.float32)
    out[: emb.shape[0]] = emb
    mask = torch.zeros(length, dtype=torch.int64)
    mask[: emb.shape[0]] = 1
    return out, mask


# ----------------------------------------------------------------------------- video decoding


def pick_bucket(height: int, width: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket (H, W) whose aspect ratio is closest (in log space) to the video's; ties -> first."""
    a = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[1] / b[0]) - a))


def resize_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F, h, w, 3) uint8 -> (F, height, width, 3): scale so the target is covered, then centre-crop."""
    import cv2

    _, h, w, _ = frames.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    top, left = (nh - height) // 2, (nw - width) // 2
    out = np.empty((frames.shape[0], height, width, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        r = f if (nh, nw) == (h, w) else cv2.resize(f, (nw, nh), interpolation=interp)
        out[i] = r[top: top + height, left: left + width]
    return out


def decode_frames(path: str | Path, num_frames: int, frame_stride: int = 1) -> np.ndarray:
    """First `num_frames` frames (every `frame_stride`-th) of a video as (F, H, W, 3) uint8, through
    the project's one video reader (`fastlight.data.video.read_video`, which stops decoding once
    enough frames are read). Raises DataError("too short: ...") when the video has fewer frames and
    read_video's one-line errors for a missing, corrupt or unreadable file."""
    frames = read_video(path, num_frames, frame_stride)
    if len(frames) < num_frames:
        raise DataError(f"too short: {len(frames)} usable frames < num_frames={num_frames}"
                        + (f" (frame_stride={frame_stride})" if frame_stride > 1 else ""))
    return frames


# ----------------------------------------------------------------------------- VAE


def wan_vae_factors(config) -> tuple[int, int]:
    """(temporal, spatial) compression of an AutoencoderKLWan config, from its structure: 2 per
    `temperal_downsample` stage in time; 2 per `dim_mult` stage in space, times the input patchify
    (`patch_size`: the Wan 2.2 VAE's 16x). The `scale_factor_*` keys are not used: diffusers registers
    defaults (4, 8) for them even where the layers compress differently (small test VAEs)."""
    temporal = 2 ** sum(bool(t) for t in config.get("temperal_downsample", []))
    spatial = 2 ** (len(config.get("dim_mult", [1, 2, 4, 4])) - 1) * (config.get("patch_size") or 1)
    return int(temporal), int(spatial)


STOCK_VAES = ("AutoencoderKLWan", "AutoencoderKLHunyuanVideo")


def _placeholder_encoder(folder: Path) -> bool:
    """Whether a VAE folder's manifest (`fastlight prune-decoder` / `distill-decoder` output, or the light
    VAE of an exported `pipeline_light`) says its encoder is an untrained placeholder or absent (`encoder:
    none`, a FastWanDecoder): a decode-only VAE."""
    f = folder / "manifest.json"
    if not f.is_file():
        return False
    m = read_json_object(f, ModelError, "re-run the decoder stage")
    m = m["pruning"] if isinstance(m.get("pruning"), dict) else m
    return m.get("encoder") in ("placeholder", "none")


def _decode_only_class(name: str, cfg_file: Path):
    """The class of a decode-only light VAE folder (e.g. fastlight.decoder.fast's FastWanDecoder) from the plug-in
    classes registered in `fastlight.pipeline_components` (data sits below the decoder package: it never imports
    it); only a class marked `fastlight_decode_only` is accepted."""
    for ep, value in sorted(registered(PIPELINE_COMPONENTS).items()):
        if value.rpartition(":")[2] == name:
            cls = component(PIPELINE_COMPONENTS, ep)
            if getattr(cls, "fastlight_decode_only", False):
                return cls
    raise DataError(f"{cfg_file} names class {name!r}; fastlight supports AutoencoderKLWan, AutoencoderKLHunyuanVideo "
                    "and the decode-only light VAEs registered in the fastlight.pipeline_components entry points "
                    "(FastWanDecoder: reinstall fastlight, pip install -e .)")


class _Vae:
    """A diffusers video VAE plus how its pipelines normalise latents."""

    def __init__(self, folder: str | Path, device: str | torch.device, dtype: torch.dtype):
        import diffusers

        folder = Path(folder)
        if not folder.exists():
            raise DataError(f"VAE folder {folder} does not exist; "
                            "pass a diffusers VAE folder or a pipeline folder with vae/")
        if not (folder / "config.json").exists() and (folder / "vae" / "config.json").exists():
            folder = folder / "vae"
        cfg_file = folder / "config.json"
        if not cfg_file.exists():
            raise DataError(f"{folder} has no config.json: not a diffusers VAE folder "
                            "(save one with `save_pretrained`)")
        cfg = read_json_object(cfg_file, DataError, "re-export the VAE")
        name = cfg.get("_class_name")
        cls = getattr(diffusers, name) if name in STOCK_VAES else _decode_only_class(name, cfg_file)
        self.vae = load_pretrained(cls, folder, "VAE folder", DataError, torch_dtype=dtype)
        self.vae = self.vae.to(device).eval()
        self.folder, self.name, self.device, self.dtype = folder, name, device, dtype
        self.has_encoder = name in STOCK_VAES
        self.decode_only = not self.has_encoder or _placeholder_encoder(folder)
        c = self.vae.config
        if name != "AutoencoderKLHunyuanVideo":  # Wan latents (a decode-only class records its own factors)
            self.temporal, self.spatial = (wan_vae_factors(c) if name == "AutoencoderKLWan"
                                           else (int(c.temporal_factor), int(c.spatial_factor)))
            z = c.z_dim
            if len(c.latents_mean) != z or len(c.latents_std) != z:
                raise DataError(f"{cfg_file}: latents_mean / latents_std have {len(c.latents_mean)} / "
                                f"{len(c.latents_std)} entries but z_dim is {z}; fix the VAE config")
            self.mean = torch.tensor(c.latents_mean, dtype=torch.float32).view(1, z, 1, 1, 1)
            self.inv_std = 1.0 / torch.tensor(c.latents_std, dtype=torch.float32).view(1, z, 1, 1, 1)
            self.scale = None
        else:
            self.temporal = int(c.temporal_compression_ratio)
            self.spatial = int(c.spatial_compression_ratio)
            self.scale = float(c.scaling_factor)

    def check(self, num_frames: int, buckets: Sequence[tuple[int, int]]) -> None:
        if (num_frames - 1) % self.temporal != 0 or num_frames < 1:
            k = max(1, round((num_frames - 1) / self.temporal))
            raise DataError(f"num_frames={num_frames} does not fit the VAE ({self.name} compresses time by "
                            f"{self.temporal}); use 1 + {self.temporal}k frames, e.g. {1 + self.temporal * k}")
        for h, w in buckets:
            if h % self.spatial or w % self.spatial:
                raise DataError(f"bucket {h}x{w} is not divisible by the VAE's spatial factor {self.spatial}; "
                                f"round it to a multiple of {self.spatial}")

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(1, 3, F, H, W) in [-1, 1] -> normalised latents (1, C, F', H', W') float32 on CPU."""
        if self.decode_only:  # bad input, not a bug: the folder is a light decoder's (export/pipeline_light/vae)
            why = ("its encoder is an untrained placeholder, manifest.json" if self.has_encoder
                   else f"a {self.name}, no encoder")
            raise ModelError(f"{self.folder} is a decode-only light VAE ({why}); encode with the full pipeline's vae/ "
                             "(the teacher's or export/pipeline)")
        z = self.vae.encode(video.to(self.device, self.dtype)).latent_dist.mode().float().cpu()
        if self.scale is not None:
            return z * self.scale
        return (z - self.mean) * self.inv_std


# ----------------------------------------------------------------------------- preprocess


def _list_videos(videos_dir: Path) -> list[Path]:
    if not videos_dir.is_dir():
        raise DataError(f"videos folder {videos_dir} does not exist or is not a folder")
    return sorted(p for p in videos_dir.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                  and not p.name.startswith("."))


def _check_buckets(buckets) -> list[tuple[int, int]]:
    try:
        out = [(int(h), int(w)) for h, w in buckets]
    except (TypeError, ValueError):
        raise DataError(f"buckets must be a list of (height, width) pairs, got {buckets!r}") from None
    if not out or any(h < 1 or w < 1 for h, w in out):
        raise DataError(f"buckets must be a non-empty list of positive (height, width) pairs, got {buckets!r}")
    return out


def preprocess(
    videos_dir: str | Path,
    captions: str | Path,
    vae_dir: str | Path,
    out_dir: str | Path,
    num_frames: int = 81,
    buckets: Iterable[tuple[int, int]] = DEFAULT_BUCKETS,
    text_embeds: str | Path | None = None,
    text_encoder: str | Path | None = None,
    shard_size: int = 64,
    frame_stride: int = 1,
    max_text_len: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> dict:
    """Encode every video under `videos_dir` into latent shards in `out_dir`; return the index dict.

    Exactly one of `text_embeds` (safetensors {video stem or caption id: (L, D)}) and `text_encoder`
    (a transformers T5/UMT5 encoder folder or diffusers pipeline folder) must be given. Videos with
    no caption / no embedding, too few frames, or that fail to decode are skipped and listed in
    index["skipped"] with a reason. Text is zero-padded to the longest embedding (file) or to
    `max_text_len` (encoder; default 512, or 256 for a HunyuanVideo pipeline folder, whose Llama +
    CLIP encoders also give each sample its pooled embedding, `extra.pooled`), with a text_mask.
    With an encoder, the negative prompt's embedding goes to NULL_NAME (index["null"]); the VAE's
    fingerprint goes to index["vae_fingerprint"] (`check_shards_match`).
    """
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    if (text_embeds is None) == (text_encoder is None):
        raise DataError("pass exactly one of --text-embeds FILE.safetensors and --text-encoder FOLDER")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise DataError(f"num_frames must be a positive integer, got {num_frames!r}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise DataError(f"shard_size must be a positive integer, got {shard_size!r}")
    if frame_stride < 1:
        raise DataError(f"frame_stride must be >= 1, got {frame_stride}")
    buckets = _check_buckets(buckets)
    caps = read_captions(captions)
    videos = _list_videos(videos_dir)
    if not videos:
        raise DataError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {videos_dir}")
    if text_embeds is not None:
        embed = _FileEmbeds(text_embeds)
        text_len = embed.max_len
    else:
        embed = text_encoder_for(text_encoder, max_text_len, device)
        text_len = embed.max_len
    vae = _Vae(vae_dir, device, dtype)
    vae.check(num_frames, buckets)
    check_dir_creatable(out_dir, "--out")  # created by the first shard: a run that encodes nothing writes nothing

    pending: dict[tuple[int, int], list[dict]] = {b: [] for b in buckets}
    shards, done, skipped = [], [], []

    def flush(bucket: tuple[int, int]) -> None:
        items = pending[bucket]
        if not items:
            return
        name = SHARD_PATTERN.format(len(shards))
        tensors = {
            "x0": torch.cat([it["x0"] for it in items]),  # (N, C, F', H', W')
            "text": torch.stack([it["text"] for it in items]),  # (N, L, D)
            "text_mask": torch.stack([it["text_mask"] for it in items]),  # (N, L)
        }
        for k in items[0]["extra"]:  # HunyuanVideo: extra.pooled (N, P)
            tensors[EXTRA_PREFIX + k] = torch.stack([it["extra"][k] for it in items])
        sha = _save_tensors_atomic(out_dir / name, tensors)
        shards.append({"file": name, "num_samples": len(items), "bucket": list(bucket),
                       "x0_shape": list(tensors["x0"].shape[1:]), "sha256": sha})
        for j, it in enumerate(items):
            done.append({"file": it["file"], "id": it["id"], "caption": it["caption"], "shard": name, "row": j})
        pending[bucket] = []

    t0 = time.time()
    for i, path in enumerate(videos):
        rel = str(path.relative_to(videos_dir))
        key = path.stem
        caption = caps.get(key)
        if caption is None and text_encoder is not None:
            skipped.append({"file": rel, "reason": f"no caption for id {key!r} in {Path(captions).name}"})
            continue
        emb, extra = embed.encode(key, caption)
        if emb is None:
            skipped.append({"file": rel, "reason": f"no text embedding for id {key!r} in {Path(text_embeds).name}"})
            continue
        try:
            frames = decode_frames(path, num_frames, frame_stride)
        except ValueError as e:
            msg = str(e)
            reason = msg if msg.startswith(("too short", "no video stream")) else f"unreadable: {msg}"
            skipped.append({"file": rel, "reason": reason})
            continue
        except Exception as e:  # noqa: BLE001 - a corrupt file must never stop the run
            skipped.append({"file": rel, "reason": f"unreadable: {type(e).__name__}: {e}"})
            continue
        bucket = pick_bucket(frames.shape[1], frames.shape[2], buckets)
        frames = resize_crop(frames, *bucket)
        x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # (1, 3, F, H, W)
        z = vae.encode(x)  # (1, C, F', H', W')
        text, mask = _pad_text(emb, text_len)
        pending[bucket].append({"file": rel, "id": key, "caption": caption, "x0": z, "text": text, "text_mask": mask,
                                "extra": extra})
        if len(pending[bucket]) >= shard_size:
            flush(bucket)
        _log(progress, f"[preprocess] {i + 1}/{len(videos)} {rel} -> bucket {bucket[0]}x{bucket[1]}, "
                       f"latent {tuple(z.shape[1:])} ({time.time() - t0:.1f}s)")
    for b in buckets:
        flush(b)
    if not shards:
        listed = "; ".join(f"{sk['file']}: {sk['reason']}" for sk in skipped[:5])
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        raise DataError(f"no video under {videos_dir} could be used, nothing written ({listed}{more}); fix or "
                        "replace those videos (or their captions / embeddings) and run again")

    index = {
        "format": "fastlight-latents/1",
        "shards": shards,
        "num_samples": sum(s["num_samples"] for s in shards),
        "videos": done,
        "skipped": skipped,
        "vae": str(vae.folder),
        "vae_class": vae.name,
        "vae_fingerprint": vae_fingerprint(vae.folder),
        "num_frames": num_frames,
        "frame_stride": frame_stride,
        "buckets": [list(b) for b in buckets],
        "text": {"source": "file" if text_embeds is not None else "encoder",
                 "path": str(text_embeds if text_embeds is not None else text_encoder), "length": text_len},
    }
    if text_encoder is not None:  # the negative prompt as the pipeline encodes it: the null of CFG training
        null_text, null_extra = embed.encode("null", NEGATIVE_PROMPT)
        index["null"] = save_null(out_dir, null_text, null_extra)
    write_made(out_dir)
    atomic_write_json(out_dir / INDEX_NAME, index)
    keep = {s["file"] for s in shards}
    for stale in out_dir.glob("latents_*.safetensors"):
        if stale.name not in keep:
            stale.unlink()
    if progress or skipped:
        print(f"[preprocess] {index['num_samples']} videos encoded into {len(shards)} shard(s) in {out_dir}; "
              f"skipped {len(skipped)}" + (" (see index.json 'skipped')" if skipped else ""), file=sys.stderr)
        for s in skipped:
            _log(progress, f"  skipped {s['file']}: {s['reason']}")
    return index


# ----------------------------------------------------------------------------- dataset


class LatentShards:
    """The samples of a `preprocess` output folder. Item: {"x0": (C, F', H', W'), "text": (L, D), "text_mask": (L,)}.

    Shards are opened lazily (memory-mapped by safetensors) and read row by row.
    """

    def __init__(self, out_dir: str | Path, verify: bool = False):
        out_dir = Path(out_dir)
        index_file = out_dir / INDEX_NAME
        if not index_file.exists():
            raise MissingFileError(f"{index_file} does not exist; "
                                   f"run `fastlight preprocess VIDEOS_DIR --out {out_dir}` first")
        index = read_json_object(index_file, DataError, "re-run fastlight preprocess")
        try:
            shards = index["shards"]
            counts = [int(s["num_samples"]) for s in shards]
            files = [str(s["file"]) for s in shards]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"{index_file} is not a fastlight latents index ({type(e).__name__}: {e}); "
                            "re-run fastlight preprocess") from None
        for s, f in zip(shards, files):
            path = out_dir / f
            if not path.exists():
                raise MissingFileError(f"shard {path} listed in {index_file} is missing; "
                                       "re-run fastlight preprocess to rebuild the shards")
            if verify and s.get("sha256") and sha256_file(path) != s["sha256"]:
                raise DataError(f"shard {path} does not match the sha256 in {index_file} (changed or truncated); "
                                "re-run fastlight preprocess")
        self.dir, self.index = out_dir, index
        self.files = files
        self.offsets = np.cumsum([0] + counts)
        self._open: dict[int, object] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return s, int(i - self.offsets[s])

    def _shard(self, s: int):
        from safetensors import safe_open

        if s not in self._open:
            self._open[s] = safe_open(str(self.dir / self.files[s]), framework="pt")
        return self._open[s]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, row = self._locate(i)
        f = self._shard(s)
        return {k: f.get_slice(k)[row] for k in f.keys()}

    def batch(self, indices: Iterable[int]) -> dict[str, torch.Tensor]:
        """Stack samples -> {"x0": (B, C, F', H', W'), "text": (B, L, D), "text_mask": (B, L)}.

        All samples must come from the same bucket (same latent shape)."""
        items = [self[int(i)] for i in indices]
        if not items:
            raise ValueError("batch() needs at least one index")
        shapes = {tuple(it["x0"].shape) for it in items}
        if len(shapes) > 1:
            raise ValueError(f"batch mixes buckets with latent shapes {sorted(shapes)}; batch indices of one bucket")
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ----------------------------------------------------------------------------- data source


def read_null(shards_dir: str | Path, index: dict) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """The negative prompt's embedding the shards folder records (index["null"]): ((1, L0, D), {name:
    (1, ...)}); (None, {}) when the folder holds none (text from a file without a "null" entry, older shards)."""
    rec = index.get("null")
    if not rec:
        return None, {}
    f = Path(shards_dir) / str(rec.get("file", NULL_NAME))
    if not f.is_file():
        raise MissingFileError(f"{f}, the null (negative prompt) embedding {Path(shards_dir) / INDEX_NAME} names, is "
                               "missing; re-run fastlight synthesize / preprocess to rebuild the shards folder")
    tensors = read_safetensors(f, DataError, "re-run fastlight synthesize / preprocess")
    if "null_text" not in tensors:
        raise DataError(f"{f} has no null_text tensor; re-run fastlight synthesize / preprocess")
    extra = {k[len(EXTRA_PREFIX):]: v for k, v in tensors.items() if k.startswith(EXTRA_PREFIX)}
    return tensors["null_text"].float(), extra


def _transformer_widths(config: dict) -> tuple[int, int, int | None]:
    """(latent channels, text width, pooled width or None) a diffusers transformer config expects."""
    text = config.get("text_dim", config.get("text_embed_dim"))
    return int(config["in_channels"]), int(text), config.get("pooled_projection_dim")


def check_shards_match(shards_dir: str | Path, pipeline_dir: str | Path) -> None:
    """Refuse (one-line DataError naming both folders and the fix) shards that do not fit a pipeline:
    latents made by another VAE (the index's `vae_fingerprint` against the pipeline's vae/), or a latent
    channel count / text width (/ pooled width) other than the pipeline's transformer expects."""
    shards_dir, pipeline_dir = Path(shards_dir), Path(pipeline_dir)
    shards = LatentShards(shards_dir)
    remake = (f"re-make the shards with this pipeline (fastlight synthesize {pipeline_dir} ... or fastlight "
              f"preprocess ... --vae {pipeline_dir} --text-encoder {pipeline_dir}), or pass the pipeline they were made with")
    for sub in ("vae", "transformer"):
        if not (pipeline_dir / sub / "config.json").is_file():
            raise DataError(f"pipeline {pipeline_dir} has no {sub}/config.json to check shards {shards_dir} against; "
                            "pass the complete diffusers pipeline folder")
    made_by = shards.index.get("vae_fingerprint")
    if not made_by:
        raise DataError(f"shards {shards_dir} record no VAE fingerprint (made by an older fastlight), so they cannot "
                        f"be checked against pipeline {pipeline_dir}; {remake}")
    ours = vae_fingerprint(pipeline_dir / "vae")
    if made_by != ours:
        raise DataError(f"shards {shards_dir} were made by another VAE (fingerprint {made_by}) than pipeline "
                        f"{pipeline_dir}'s vae/ ({ours}); {remake}")
    config = read_json_object(pipeline_dir / "transformer" / "config.json", DataError, "re-download the pipeline")
    channels, text_width, pooled_width = _transformer_widths(config)
    row = shards[0]
    if row["x0"].shape[0] != channels:
        raise DataError(f"shards {shards_dir} hold {row['x0'].shape[0]}-channel latents but pipeline {pipeline_dir}'s "
                        f"transformer takes {channels}; {remake}")
    if row["text"].shape[-1] != text_width:
        raise DataError(f"shards {shards_dir} hold {row['text'].shape[-1]}-wide text embeddings but pipeline "
                        f"{pipeline_dir}'s transformer reads {text_width}; {remake}")
    pooled = row.get(EXTRA_PREFIX + "pooled")
    if pooled_width is not None and (pooled is None or pooled.shape[-1] != pooled_width):
        held = "no pooled text embedding" if pooled is None else f"{pooled.shape[-1]}-wide pooled embeddings"
        raise DataError(f"shards {shards_dir} hold {held} but pipeline {pipeline_dir}'s transformer reads "
                        f"{pooled_width}-wide pooled CLIP embeddings; {remake}")


@dataclass(frozen=True)
class TextPad:
    """Pad each batch's text to a length drawn from `lengths` with probabilities `probs` (the latents
    source's `text_pad: {lengths: [16, 512], probs: [0.9, 0.1]}`): a model trained mostly at its
    pipeline's short length and sometimes at the stock pipeline's 512 serves both callers. Padded
    positions are zero tokens with mask 0, exactly what the stock pipeline feeds."""

    lengths: tuple[int, ...]
    probs: tuple[float, ...]

    KEYS = ("lengths", "probs")
    EXAMPLE = "text_pad: {lengths: [16, 512], probs: [0.9, 0.1]}"

    @classmethod
    def from_config(cls, value, stored: int, where: str) -> "TextPad":
        """The `text_pad` config value, checked against the shards' stored text length (one-line DataError)."""
        def bad(msg: str) -> DataError:
            return DataError(f"{where}: text_pad {msg}; e.g. {cls.EXAMPLE}")

        if not isinstance(value, dict):
            raise bad(f"must be a mapping, got {value!r}")
        unknown = sorted(set(value) - set(cls.KEYS))
        if unknown:
            raise bad(f"has no key {unknown[0]!r} (keys: {', '.join(cls.KEYS)})")
        lengths, probs = value.get("lengths"), value.get("probs")
        if not isinstance(lengths, (list, tuple)) or not lengths or not all(
                isinstance(n, int) and not isinstance(n, bool) for n in lengths):
            raise bad(f"lengths must be a list of whole numbers, got {lengths!r}")
        if len(set(lengths)) != len(lengths):
            raise bad(f"lengths {list(lengths)} repeat a length")
        if min(lengths) < stored:
            raise bad(f"length {min(lengths)} is shorter than the {stored} tokens the shards store (padding never "
                      f"cuts text); use lengths >= {stored} or re-make the shards at a shorter text length")
        if not isinstance(probs, (list, tuple)) or len(probs) != len(lengths) or not all(
                isinstance(q, (int, float)) and not isinstance(q, bool) and math.isfinite(q) and q >= 0 for q in probs):
            raise bad(f"probs must be {len(lengths)} numbers >= 0, one per length, got {probs!r}")
        if abs(sum(probs) - 1.0) > 1e-6:
            raise bad(f"probs {list(probs)} must sum to 1")
        return cls(tuple(int(n) for n in lengths), tuple(float(q) for q in probs))

    def draw(self, gen: torch.Generator) -> int:
        """One length, drawn with `gen` (one uniform number)."""
        u, total = float(torch.rand((), generator=gen, dtype=torch.float64)), 0.0
        for n, q in zip(self.lengths, self.probs):
            total += q
            if u < total:
                return n
        return next(n for n, q in zip(reversed(self.lengths), reversed(self.probs)) if q > 0)  # rounding at the top


def pad_text_batch(text: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, D) text and (B, L) mask zero-padded to `length` >= L tokens."""
    extra = length - text.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad {text.shape[1]} text tokens to {length}")
    if extra == 0:
        return text, mask
    return (torch.cat([text, text.new_zeros(text.shape[0], extra, text.shape[2])], dim=1),
            torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1))


@dataclass
class LatentShardSource:
    """The shards of a `fastlight preprocess` / `fastlight synthesize` folder as a data source
    (fastlight/data/source.py), registered as `latents`: `data: {_component_: latents, path: SHARDS}`;
    `pipeline: PIPELINE` first checks the shards fit that pipeline (`check_shards_match`).

    Epoch e visits every sample once in a seeded order: each bucket's samples are permuted
    (stream `latents/<stream>/epoch`, step e), cut into global batches of `batch_size` (a bucket's
    last batch is filled up from the start of its permutation: every batch is full and of one
    latent shape), and the batches of all buckets are shuffled together. Global batch `step` is
    batch `step % E` of epoch `step // E` (E batches per epoch); process `rank` of N takes rows
    [rank * B / N, (rank + 1) * B / N). A pure function of (path, seed, stream, step, rank, N).

    Shards with `extra.<name>` tensors (HunyuanVideo: `extra.pooled`) give b["extra"] = {name: (B, ...),
    "text_mask": (B, L)} (the mask beside them, where the HunyuanVideo adapter reads it).
    `null_text` (1, L0, D) and `null_extra` {name: (1, ...)}: the negative prompt's embedding the folder
    records (NULL_NAME), or None / {} when it holds none; recipes use it as the CFG null of a model that
    has none of its own (fastlight/train/batches.py).

    `text_len`: the text tokens the shards store (what they were encoded at). `text_pad` (`TextPad`,
    default off): global batch `step` is padded to a length drawn from stream `latents/<stream>/text_pad`,
    step `step` (the same for every rank of the batch)."""

    path: str = ""
    batch_size: int = 16
    seed: int = 0
    stream: str = "train"
    pipeline: str = ""
    text_pad: dict | None = None  # {lengths: [...], probs: [...]}: see TextPad; None: the stored length

    def __post_init__(self):
        if not self.path:
            raise DataError("the latents source needs the folder `fastlight preprocess` wrote: "
                            "data: {_component_: latents, path: SHARDS}")
        if self.pipeline:
            check_shards_match(self.path, self.pipeline)
        self.shards = LatentShards(self.path)
        if len(self.shards) == 0:
            raise DataError(f"{self.path} holds no samples; re-run fastlight preprocess on readable videos")
        self.null_text, self.null_extra = read_null(self.path, self.shards.index)
        self.text_len = int(self.shards[0]["text"].shape[0])
        self.padding = None if self.text_pad is None else TextPad.from_config(
            self.text_pad, self.text_len, f"latents source {self.path}")
        buckets: dict[tuple, list[int]] = {}
        for s, info in enumerate(self.shards.index["shards"]):
            key = tuple(info.get("bucket") or ())
            buckets.setdefault(key, []).extend(range(int(self.shards.offsets[s]), int(self.shards.offsets[s + 1])))
        self.buckets = [buckets[k] for k in sorted(buckets)]
        self._epochs: dict[int, list[list[int]]] = {}

    @property
    def batches_per_epoch(self) -> int:
        return sum(math.ceil(len(b) / self.batch_size) for b in self.buckets)

    def epoch(self, e: int) -> list[list[int]]:
        """The global batches (sample indices) of epoch `e`, in order."""
        if e not in self._epochs:
            gen = stream_generator(self.seed, f"latents/{self.stream}/epoch", e)
            batches = []
            for members in self.buckets:
                perm = [members[i] for i in torch.randperm(len(members), generator=gen).tolist()]
                for start in range(0, len(perm), self.batch_size):
                    batches.append([perm[(start + j) % len(perm)] for j in range(self.batch_size)])
            order = torch.randperm(len(batches), generator=gen).tolist()
            self._epochs = {e: [batches[i] for i in order]}  # keep one epoch: steps advance monotonically
        return self._epochs[e]

    def batch(self, step: int, rank: int = 0, num_processes: int = 1) -> dict:
        n = local_batch_size(self.batch_size, num_processes)
        e, j = divmod(int(step), self.batches_per_epoch)
        rows = self.epoch(e)[j][rank * n:(rank + 1) * n]
        b = self.shards.batch(rows)
        out = {"x0": b["x0"].float(), "text": b["text"].float(), "text_mask": b["text_mask"].float()}
        if self.padding is not None:
            length = self.padding.draw(stream_generator(self.seed, f"latents/{self.stream}/text_pad", int(step)))
            out["text"], out["text_mask"] = pad_text_batch(out["text"], out["text_mask"], length)
        if "image" in b:  # TI2V shards (`synthesize --images`): the clean first-frame latent conditions the model
            out["image"] = b["image"].float()
        extra = {k[len(EXTRA_PREFIX):]: v.float() for k, v in b.items() if k.startswith(EXTRA_PREFIX)}
        if extra:
            out["extra"] = {**extra, "text_mask": out["text_mask"]}
        return out
