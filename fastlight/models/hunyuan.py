"""Adapter: diffusers `HunyuanVideoTransformer3DModel` (HunyuanVideo T2V, HunyuanVideo-I2V
"token_replace") as a Denoiser.

The forward below runs the stock module's own submodules (RoPE, patch embedding, token
refiner, time/guidance/pooled-text embedding, double- and single-stream blocks, output
head) in the order diffusers does, but over filtered block lists, so that skipping a block
costs nothing and hidden states can be captured. `tests/models/test_hunyuan.py` checks it
equals `HunyuanVideoTransformer3DModel.forward` when nothing is skipped, and equals a model
with the blocks physically removed when something is.

Blocks, in execution order: all double-stream blocks (`transformer_blocks`, kind "double")
then all single-stream blocks (`single_transformer_blocks`, kind "single"); both are
prunable. Captured hidden states are the video tokens only, (B, N, D).

Conditioning (batch-first tensors):
  cond.text             (B, L, text_embed_dim) LLM text embeddings
  cond.extra["pooled"]    (B, pooled_projection_dim) CLIP pooled projection
  cond.extra["text_mask"] (B, L) text attention mask (1 = valid; valid tokens first)
  cond.extra["guidance"]  (B,) embedded guidance in diffusers units (scale * 1000); optional,
                          default 6.0 * 1000 as the diffusers pipelines pass; only used by
                          guidance-distilled models (`guidance_embeds=True`).

Image-to-video follows HunyuanVideo-I2V "token_replace" (`image_condition_type=
"token_replace"`): the first latent frame is replaced by the clean image latent and its
tokens are modulated with the timestep-0 embedding (the stock model does this itself);
the velocity returned for that frame is 0 so samplers leave it untouched. The
"latent_concat" variant (and image conditioning on a T2V model) is refused with a ModelError.

The null (unconditional) text is `self.null_text`, (1, L0, text_embed_dim), and the null pooled
projection `self.null_pooled`, (1, pooled_projection_dim) (zeros unless set, e.g. to the CLIP
embedding of the negative prompt as the stock pipeline's true CFG uses); store the text trimmed
to its valid tokens: `null_cond` marks those L0 tokens valid and pads with masked-out zero
tokens up to the prompt's length L (masked tokens do not change the video output), so cond
and null cond can be batched. The default null text is one zero token, i.e. a mask with
only the first token valid.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fastlight.errors import ModelError
from fastlight.fileio import read_json_object, read_safetensors
from fastlight.models.denoiser import BlockInfo, Cond, Denoiser
from fastlight.models.weights import load_diffusers_module

DEFAULT_GUIDANCE = 6.0  # diffusers HunyuanVideo pipelines' default `guidance_scale` (passed * 1000)


class HunyuanDenoiser(Denoiser):
    family = "hunyuan"

    def __init__(self, model, null_text: torch.Tensor | None = None, meta: dict | None = None):
        super().__init__()
        self.model = model
        cfg = model.config
        if null_text is None:
            null_text = torch.zeros(1, 1, cfg.text_embed_dim)
        self.register_buffer("null_text", null_text.reshape(1, -1, cfg.text_embed_dim).float(), persistent=False)
        # the null pooled CLIP embedding (the stock pipeline's: CLIP of the negative prompt); zeros by default
        self.register_buffer("null_pooled", torch.zeros(1, cfg.pooled_projection_dim), persistent=False)
        self.meta = dict(meta or {})
        self._infos = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, null_text=None, meta=None, **config) -> "HunyuanDenoiser":
        from diffusers import HunyuanVideoTransformer3DModel

        return cls(HunyuanVideoTransformer3DModel(**config), null_text, meta)

    @classmethod
    def from_folder(cls, path: Path, device="cpu") -> "HunyuanDenoiser":
        from diffusers import HunyuanVideoTransformer3DModel

        path = Path(path)
        model = load_diffusers_module(HunyuanVideoTransformer3DModel, path, device)
        null_text, meta = None, {}
        if (path / "null_text.safetensors").exists():
            null_text = read_safetensors(path / "null_text.safetensors", ModelError, "re-export the model")
            if "null_text" not in null_text:
                raise ModelError(f"{path / 'null_text.safetensors'} has no null_text tensor; re-export the model")
            nulls, null_text = null_text, null_text["null_text"]
        else:
            nulls = {}
        if (path / "fastlight.json").exists():
            meta = read_json_object(path / "fastlight.json", ModelError, "re-export the model")
        den = cls(model, null_text, meta)
        if "null_pooled" in nulls:
            den.load_null_state(nulls)
        return den.to(device)

    def block_infos(self) -> list[BlockInfo]:
        doubles, singles = self.model.transformer_blocks, self.model.single_transformer_blocks
        if self._infos is None or len(self._infos) != len(doubles) + len(singles):
            infos = []
            for kind, blocks in (("double", doubles), ("single", singles)):
                for k, b in enumerate(blocks):
                    infos.append(BlockInfo(len(infos), kind, k, sum(p.numel() for p in b.parameters())))
            self._infos = infos
        return self._infos

    # ---- conditioning ---------------------------------------------------------------------
    def null_cond(self, cond: Cond) -> Cond:
        """Null text (padded with masked-out zero tokens to cond's length L, so that
        `cond.cat(null_cond(cond))` works for batched CFG), zero pooled, same guidance/image."""
        nc = super().null_cond(cond)  # text already zero-padded to cond's length L
        L, L0 = cond.text.shape[1], self.null_text.shape[1]
        if L0 < L and nc.extra is not None and "text_mask" in nc.extra:
            nc.extra["text_mask"] = torch.nn.functional.pad(nc.extra["text_mask"], (0, L - L0))
        return nc

    def null_state(self) -> dict[str, torch.Tensor]:
        return {"null_text": self.null_text, "null_pooled": self.null_pooled}

    def load_null_state(self, state: dict[str, torch.Tensor]) -> None:
        super().load_null_state(state)
        if "null_pooled" in state:
            self.null_pooled = state["null_pooled"].reshape(1, -1).float().to(self.null_pooled.device)

    def null_extra(self, key: str, value: torch.Tensor) -> torch.Tensor:
        if key == "pooled":
            return self.null_pooled.to(value).expand_as(value).clone()
        if key == "text_mask":  # all tokens of the (trimmed) null text are valid
            return torch.ones(value.shape[0], self.null_text.shape[1], dtype=value.dtype, device=value.device)
        if key == "guidance":  # embedded guidance is not part of the prompt
            return value
        return torch.zeros_like(value)

    def _extras(self, cond: Cond, B: int, device, dtype):
        extra = cond.extra or {}
        for key in ("pooled", "text_mask"):
            if key not in extra:
                raise ModelError(
                    f"HunyuanVideo needs cond.extra[{key!r}] (pooled: (B, pooled_projection_dim) CLIP pooled "
                    "projection; text_mask: (B, L) text attention mask)"
                )
        pooled, mask = extra["pooled"].to(device=device, dtype=dtype), extra["text_mask"].to(device)
        if mask.shape != cond.text.shape[:2]:
            raise ModelError(f"text_mask has shape {tuple(mask.shape)} but cond.text has {tuple(cond.text.shape[:2])} tokens")
        guidance = None
        if self.model.config.guidance_embeds:
            guidance = extra.get("guidance")
            if guidance is None:
                guidance = torch.full((B,), DEFAULT_GUIDANCE * 1000.0, device=device, dtype=dtype)
            else:
                guidance = torch.as_tensor(guidance, device=device, dtype=dtype)
                if guidance.ndim == 0:
                    guidance = guidance.expand(B)
        return pooled, mask, guidance

    # ---- forward --------------------------------------------------------------------------
    def _embed(self, x_t, s, cond: Cond) -> dict:
        """RoPE, conditional embeddings, patch + text embedding (token refiner), joint attention mask."""
        m = self.model
        cfg = m.config
        B, C, F, H, W = x_t.shape
        p, p_t = cfg.patch_size, cfg.patch_size_t
        if C != cfg.in_channels:
            raise ModelError(f"x_t has {C} channels but the model expects {cfg.in_channels}")
        if F % p_t or H % p or W % p:
            raise ModelError(f"x_t frames/height/width {F}x{H}x{W} must be multiples of the patch size ({p_t}, {p}, {p})")
        if cond.image is not None:
            if cfg.image_condition_type != "token_replace":
                raise ModelError(
                    f"this HunyuanVideo model (image_condition_type={cfg.image_condition_type!r}) is text-to-video only "
                    "here; image conditioning needs an I2V model with image_condition_type='token_replace'"
                )
            if p_t != 1:
                raise ModelError("image conditioning (token_replace) needs a temporal patch size of 1")
            x_t = torch.cat([cond.image.to(x_t), x_t[:, :, 1:]], dim=2)  # keep the first frame clean
        h, w = H // p, W // p
        dtype = x_t.dtype
        timestep = s * 1000.0  # (B,)
        text = cond.text.to(dtype)
        pooled, text_mask, guidance = self._extras(cond, B, x_t.device, dtype)

        rotary_emb = m.rope(x_t)
        temb, token_replace_emb = m.time_text_embed(timestep, pooled, guidance)
        hidden = m.x_embedder(x_t)  # (B, N, D)
        text = m.context_embedder(text, timestep, text_mask)  # (B, L, D)

        # joint attention mask: all video tokens + the valid text tokens (a prefix)
        N, L = hidden.shape[1], text.shape[1]
        valid = N + text_mask.sum(dim=1, dtype=torch.int)  # (B,)
        idx = torch.arange(N + L, device=hidden.device).unsqueeze(0)  # (1, N + L)
        attention_mask = (idx < valid.unsqueeze(1)).unsqueeze(1).unsqueeze(1)  # (B, 1, 1, N + L) bool
        return {"hidden": hidden, "text": text, "temb": temb,
                "args": (temb, attention_mask, rotary_emb, token_replace_emb, h * w),  # h * w: first-frame tokens
                "shape": (B, F, H, W), "image": cond.image is not None}

    def _block(self, i: int, st: dict) -> dict:
        m = self.model
        n_double = len(m.transformer_blocks)
        block = m.transformer_blocks[i] if i < n_double else m.single_transformer_blocks[i - n_double]
        if torch.is_grad_enabled() and m.gradient_checkpointing:
            hidden, text = m._gradient_checkpointing_func(block, st["hidden"], st["text"], *st["args"])
        else:
            hidden, text = block(st["hidden"], st["text"], *st["args"])
        return {**st, "hidden": hidden, "text": text}  # hidden: video tokens (B, N, D)

    def _head(self, st: dict) -> torch.Tensor:
        m = self.model
        cfg = m.config
        B, F, H, W = st["shape"]
        p, p_t = cfg.patch_size, cfg.patch_size_t
        f, h, w = F // p_t, H // p, W // p
        hidden = m.norm_out(st["hidden"], st["temb"])
        out = m.proj_out(hidden)  # (B, N, C * p_t * p * p)
        # (B, f, h, w, C, p_t, p, p) -> (B, C, f, p_t, h, p, w, p) -> (B, C, F, H, W)
        out = out.reshape(B, f, h, w, -1, p_t, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
        v = out.reshape(B, -1, F, H, W)
        if st["image"]:
            v = torch.cat([torch.zeros_like(v[:, :, :1]), v[:, :, 1:]], dim=2)
        return v

    # ---- layout: what Stage I analysis and surgery need to know of this architecture ---------------
    # block kind -> (state-dict prefix of its ModuleList, config key of its length): depth surgery
    DEPTH_LAYOUT = {"double": ("transformer_blocks", "num_layers"),
                    "single": ("single_transformer_blocks", "num_single_layers")}

    def width_modules(self, index: int) -> dict:
        """Where block `index`'s heads and FFN units live (analyze/taylor.py `WidthLayout`; see
        `WanDenoiser.width_modules`). Double-stream: video and text streams share the head ids, each
        has its FFN; single-stream: `proj_out` reads cat([attention output, MLP activations])."""
        info = self.blocks[index]
        if info.kind == "double":
            blk = self.model.transformer_blocks[info.kind_index]
            a = blk.attn
            return {"kind": "double", "attentions": [a],
                    "head_rows": [[a.to_q, a.to_k, a.to_v], [a.add_q_proj, a.add_k_proj, a.add_v_proj]],
                    "head_cols": [(a.to_out[0], 0), (a.to_add_out, 0)],
                    "ffn_rows": [[blk.ff.net[0].proj], [blk.ff_context.net[0].proj]],
                    "ffn_cols": [(blk.ff.net[2], 0), (blk.ff_context.net[2], 0)]}
        blk = self.model.single_transformer_blocks[info.kind_index]
        a = blk.attn
        inner = a.to_q.out_features if a.to_q is not None else 0  # heads * head_dim: where the MLP columns start
        return {"kind": "single", "attentions": [a], "head_rows": [[a.to_q, a.to_k, a.to_v]],
                "head_cols": [(blk.proj_out, 0)], "ffn_rows": [[blk.proj_mlp]], "ffn_cols": [(blk.proj_out, inner)]}


def tiny_hunyuan_config(
    num_layers: int = 2,
    num_single_layers: int = 2,
    in_channels: int = 4,
    text_embed_dim: int = 12,
    pooled_projection_dim: int = 8,
    image_condition_type: str | None = None,
    guidance_embeds: bool = True,
) -> dict:
    """A tiny HunyuanVideo config for tests (2 heads x 8 dims, patch (1, 2, 2))."""
    return dict(
        in_channels=in_channels,
        out_channels=in_channels,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=2,
        patch_size_t=1,
        qk_norm="rms_norm",
        guidance_embeds=guidance_embeds,
        text_embed_dim=text_embed_dim,
        pooled_projection_dim=pooled_projection_dim,
        rope_theta=256.0,
        rope_axes_dim=(2, 2, 4),  # sums to attention_head_dim
        image_condition_type=image_condition_type,
    )
