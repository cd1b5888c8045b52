"""A tiny causal 3-D conv decoder for Wan latents (the Lightning Video / TAEHV-style option).

    dec = TinyWanDecoder(z_dim=16, width=16)        # diffusers ModelMixin + ConfigMixin
    video = dec.decode(z).sample                     # same contract as AutoencoderKLWan.decode
    dec.save_pretrained(dir); TinyWanDecoder.from_pretrained(dir)

It takes the VAE's raw latents (B, z_dim, T, h, w) and returns (B, 3, 1 + 4 (T - 1), 8 h, 8 w) in
[-1, 1], the same frame count as the Wan VAE: each temporal upsampling doubles every frame but the
first (2 T - 1 frames), which is what Wan's causal decoder does. Unlike `AutoencoderKLWan.decode`
(one latent frame per call with a feature cache), the whole clip goes through at once; causality comes
from front-padding each 3-D convolution in time (replicating the first frame). Stages mirror the Wan
decoder (mid at 4w, then 4w / 2w / w with 3-D, 3-D, 2-D upsampling), so their outputs line up with
the teacher's stage outputs for feature matching (`stage_outputs`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class CausalConv3d(nn.Conv3d):
    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__(cin, cout, k, padding=(0, k // 2, k // 2))
        self.tpad = k - 1

    def forward(self, x):
        if self.tpad:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.tpad, -1, -1), x], dim=2)
        return super().forward(x)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = CausalConv3d(cin, cout)
        self.conv2 = CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.conv2(F.silu(self.conv1(F.silu(x))))


class Up(nn.Module):
    """2x spatial (nearest + conv); with temporal=True also 2x in time but the first frame."""

    def __init__(self, cin: int, cout: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        if temporal:
            self.time_conv = CausalConv3d(cin, 2 * cin, 1)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        b, c, t, h, w = x.shape
        if self.temporal:
            y = self.time_conv(x).view(b, 2, c, t, h, w)
            x = torch.stack((y[:, 0], y[:, 1]), dim=3).reshape(b, c, 2 * t, h, w)[:, :, 1:]
            t = 2 * t - 1
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x.view(b, t, -1, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)


class TinyWanDecoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, z_dim: int = 16, width: int = 16, temporal_upsample: tuple = (True, True, False),
                 out_channels: int = 3):
        super().__init__()
        w4, w2, w1 = 4 * width, 2 * width, width
        self.conv_in = CausalConv3d(z_dim, w4)
        self.mid = Block(w4, w4)
        dims = [(w4, w4), (w4, w2), (w2, w1)]
        self.blocks = nn.ModuleList([Block(a, b) for a, b in dims])
        self.ups = nn.ModuleList([Up(b, b, t) for (_, b), t in zip(dims, temporal_upsample)])
        self.head = Block(w1, w1)
        self.conv_out = CausalConv3d(w1, out_channels)

    def stages(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Unclamped output and the stage outputs (mid, then after each upsampling, then the head)."""
        x = self.mid(self.conv_in(z))
        feats = [x]
        for blk, up in zip(self.blocks, self.ups):
            x = up(blk(x))
            feats.append(x)
        x = self.head(x)
        feats.append(x)
        return self.conv_out(F.silu(x)), feats

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        out = self.stages(z)[0].clamp(-1.0, 1.0)
        return DecoderOutput(sample=out) if return_dict else (out,)

    def forward(self, z):
        return self.decode(z).sample
