"""Adapter: diffusers `WanTransformer3DModel` (Wan 2.1 / 2.2, T2V and TI2V) as a Denoiser.

The forward below runs the stock module's own submodules (patch embedding, condition
embedder, blocks, output head) in the order diffusers does, but over a filtered block
list, so that skipping a block costs nothing and hidden states can be captured.
`tests/models/test_wan.py` checks it equals `WanTransformer3DModel.forward` bit for bit
when nothing is skipped, and equals a model with the blocks physically removed when
something is.

Text+image-to-video follows Wan 2.2 TI2V: the first latent frame is replaced by the
clean image latent and its tokens get timestep 0 (per-token timesteps, `timestep` of
shape (B, N)); the velocity returned for that frame is 0 so samplers leave it untouched.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.utils.checkpoint

from fastlight.errors import ModelError
from fastlight.fileio import read_json_object, read_safetensors
from fastlight.models.denoiser import BlockInfo, Cond, Denoiser
from fastlight.models.weights import load_diffusers_module


class WanDenoiser(Denoiser):
    family = "wan"

    def __init__(self, model, null_text: torch.Tensor | None = None, meta: dict | None = None):
        super().__init__()
        self.model = model
        cfg = model.config
        if null_text is None:
            null_text = torch.zeros(1, 1, cfg.text_dim)
        self.register_buffer("null_text", null_text.reshape(1, -1, cfg.text_dim).float(), persistent=False)
        self.meta = dict(meta or {})
        self._infos = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, null_text=None, meta=None, **config) -> "WanDenoiser":
        from diffusers import WanTransformer3DModel

        return cls(WanTransformer3DModel(**config), null_text, meta)

    @classmethod
    def from_folder(cls, path: Path, device="cpu") -> "WanDenoiser":
        from diffusers import WanTransformer3DModel

        model = load_diffusers_module(WanTransformer3DModel, Path(path), device)
        null_text, meta = None, {}
        if (Path(path) / "null_text.safetensors").exists():
            null_text = read_safetensors(Path(path) / "null_text.safetensors", ModelError, "re-export the model")
            if "null_text" not in null_text:
                raise ModelError(f"{Path(path) / 'null_text.safetensors'} has no null_text tensor; re-export the model")
            null_text = null_text["null_text"]
        if (Path(path) / "fastlight.json").exists():
            meta = read_json_object(Path(path) / "fastlight.json", ModelError, "re-export the model")
        return cls(model, null_text, meta).to(device)

    def block_infos(self) -> list[BlockInfo]:
        if self._infos is None or len(self._infos) != len(self.model.blocks):
            self._infos = [
                BlockInfo(i, "wan", i, sum(p.numel() for p in b.parameters())) for i, b in enumerate(self.model.blocks)
            ]
        return self._infos

    # ---- forward --------------------------------------------------------------------------
    def _timesteps(self, s: torch.Tensor, x_t: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        """timestep = 1000 * s: (B,) for T2V, (B, N) with 0 on the first frame's tokens for TI2V."""
        t = s * 1000.0
        if image is None:
            return t
        p_t, p_h, p_w = self.model.config.patch_size
        if p_t != 1:
            raise ModelError("image conditioning (TI2V) needs a temporal patch size of 1 so the first frame has its own tokens")
        B, _, F, H, W = x_t.shape
        tokens_per_frame = (H // p_h) * (W // p_w)
        t = t.view(B, 1, 1).expand(B, F, tokens_per_frame).clone()
        t[:, 0] = 0.0
        return t.reshape(B, F * tokens_per_frame)  # (B, N)

    def _embed(self, x_t, s, cond: Cond) -> dict:
        """Patch + condition embeddings: the state the blocks update (`hidden`: (B, N, D))."""
        m = self.model
        B, C, F, H, W = x_t.shape
        p_t, p_h, p_w = m.config.patch_size
        if C != m.config.in_channels:
            raise ModelError(f"x_t has {C} channels but the model expects {m.config.in_channels}")
        if F % p_t or H % p_h or W % p_w:
            raise ModelError(f"x_t frames/height/width {F}x{H}x{W} must be multiples of the patch size {m.config.patch_size}")
        if cond.image is not None:
            x_t = torch.cat([cond.image.to(x_t), x_t[:, :, 1:]], dim=2)  # keep the first frame clean
        timestep = self._timesteps(s, x_t, cond.image)

        rotary_emb = m.rope(x_t)
        hidden = m.patch_embedding(x_t).flatten(2).transpose(1, 2).contiguous()  # (B, N, D)
        ts_seq_len = timestep.shape[1] if timestep.ndim == 2 else None
        temb, timestep_proj, text, image_emb = m.condition_embedder(
            timestep.flatten(), cond.text.to(hidden.dtype), None if not cond.extra else cond.extra.get("image_embeds"),
            timestep_seq_len=ts_seq_len,
        )
        timestep_proj = timestep_proj.unflatten(-1, (6, -1))  # (B, 6, D) or (B, N, 6, D)
        if image_emb is not None:
            text = torch.cat([image_emb, text], dim=1)
        return {"hidden": hidden, "text": text, "timestep_proj": timestep_proj, "rotary_emb": rotary_emb,
                "temb": temb, "shape": (B, F, H, W), "image": cond.image is not None}

    def _block(self, i: int, st: dict) -> dict:
        block = self.model.blocks[i]
        args = (st["hidden"], st["text"], st["timestep_proj"], st["rotary_emb"])
        if torch.is_grad_enabled() and self.model.gradient_checkpointing:  # recompute in backward, as diffusers does
            hidden = torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        else:
            hidden = block(*args)
        return {**st, "hidden": hidden}

    def _head(self, st: dict) -> torch.Tensor:
        m = self.model
        hidden, temb = st["hidden"], st["temb"]
        B, F, H, W = st["shape"]
        p_t, p_h, p_w = m.config.patch_size
        if temb.ndim == 3:  # (B, N, D): per-token modulation (TI2V)
            shift, scale = (m.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).unbind(2)
        else:
            shift, scale = (m.scale_shift_table + temb.unsqueeze(1)).unbind(1)
            shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
        hidden = (m.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        out = m.proj_out(hidden)  # (B, N, C * p_t * p_h * p_w)
        f, h, w = F // p_t, H // p_h, W // p_w
        # (B, f, h, w, p_t, p_h, p_w, C) -> (B, C, f, p_t, h, p_h, w, p_w) -> (B, C, F, H, W)
        out = out.reshape(B, f, h, w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        v = out.reshape(B, -1, F, H, W)
        if st["image"]:
            v = torch.cat([torch.zeros_like(v[:, :, :1]), v[:, :, 1:]], dim=2)
        return v

    # ---- layout: what Stage I analysis and surgery need to know of this architecture ---------------
    # block kind -> (state-dict prefix of its ModuleList, config key of its length): depth surgery
    DEPTH_LAYOUT = {"wan": ("blocks", "num_layers")}
    # a block's FFN by state-dict name: (first linear, its rows are the units; second, its columns are)
    FFN_LINEARS = ("ffn.net.0.proj", "ffn.net.2")

    def width_modules(self, index: int) -> dict:
        """Where block `index`'s heads and FFN units live (analyze/taylor.py `WidthLayout`):
        attentions, and the linears whose rows (`*_rows`, groups that read the same input) or input
        columns at an offset (`*_cols`) belong to a head / an FFN unit. A plan keeps the same head
        ids in self- and cross-attention."""
        blk = self.model.blocks[index]
        a1, a2 = blk.attn1, blk.attn2
        head_rows = [[a1.to_q, a1.to_k, a1.to_v], [a2.to_q], [a2.to_k, a2.to_v]]
        if getattr(a2, "add_k_proj", None) is not None:  # image cross-attention (Wan I2V)
            head_rows.append([a2.add_k_proj, a2.add_v_proj])
        return {"kind": "wan", "attentions": [a1, a2], "head_rows": head_rows,
                "head_cols": [(a1.to_out[0], 0), (a2.to_out[0], 0)],
                "ffn_rows": [[blk.ffn.net[0].proj]], "ffn_cols": [(blk.ffn.net[2], 0)]}


def tiny_wan_config(num_layers: int = 4, in_channels: int = 4, text_dim: int = 16, patch_size=(1, 2, 2)) -> dict:
    """A few-thousand-parameter Wan config for tests."""
    return dict(
        patch_size=patch_size,
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=in_channels,
        out_channels=in_channels,
        text_dim=text_dim,
        freq_dim=32,
        ffn_dim=32,
        num_layers=num_layers,
        rope_max_seq_len=32,
    )
