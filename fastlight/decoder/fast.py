"""A one-pass fast light decoder for Wan latents (issue 17's light-decoder speed target).

    dec = FastWanDecoder.from_teacher(vae.config, width=16)  # diffusers ModelMixin + ConfigMixin
    video = dec.decode(z).sample                              # the AutoencoderKLWan.decode contract
    dec.save_pretrained(dir); FastWanDecoder.from_pretrained(dir)
    WanPipeline(..., vae=dec)       # or a folder whose model_index.json names ["fastlight.decoder.fast", "FastWanDecoder"]

Raw VAE latents (B, z_dim, T, h, w) -> (B, 3, 1 + r (T - 1), s h, s w) in [-1, 1], r = the teacher's temporal
factor (2 per True in `temperal_downsample`: 4 for Wan 2.1), s its spatial factor (8), the Wan VAE's frame count.
The layout is the one benchmarks/README.md derives from profiling the stock decoder on CPU ("Why width alone
stops at ~1/4"), each choice against one measured cost of `AutoencoderKLWan`'s decoder:

1. The whole clip in one pass: no per-latent-frame loop with a Python feature cache.
2. Temporal mixing at latent resolution: `latent_blocks` residual blocks of causal 3x3x3 convolutions at
   h x w, front-padded by replicating frame 0 (so output frame 0 depends on latent frame 0 only, as in Wan's
   causal decoder; frames 1 + r (t - 1) .. r t on latent frames 0..t). `time_levels` > 0 makes the blocks of
   the first that many spatial levels causal 3x3x3 too (frame rate, still causal; default 0: per frame).
3. Depth-to-time: one 1x1 convolution makes r frames out of each latent frame (the channel axis split into r
   groups, cf. depth-to-space); of latent frame 0's r frames only the last is kept: 1 + r (T - 1) frames.
4. Spatial stages as 2-D convolutions with the frames folded into the batch. Why: on CPU at batch 1 PyTorch
   sends a Conv3d to `slow_conv3d` (oneDNN is skipped when batch x channels x frames x height <= 20480, which
   every Wan decoder layer at Shapes / 480p sizes is), while a Conv2d on (B * frames, C, H, W) takes oneDNN.
   The causal 3-D convolutions of point 2 are computed the same way (`TimeConv`: the k_t shifted copies of
   the clip stacked on the channel axis, one Conv2d: exactly a causal Conv3d, on oneDNN's path).
5. No normalisation layers (no RMS norms above 16x16: the stock decoder's `F.normalize` costs follow the
   number of positions, ~20-40% of its time at full resolution).
6. Every spatial 2x is a sub-pixel convolution (the conv at the low resolution makes 4x the channels, then
   pixel shuffle: Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
   Sub-Pixel Convolutional Neural Network"); the last one is the output head, so no convolution runs at the
   full resolution.

Depth: `latent_blocks` residual blocks at latent resolution, `spatial_blocks` per spatial level.
Widths: `width` w gives 2^(n-1) w channels at latent resolution, halving per 2x up to w at s/2 (n = log2 s).
`stages(z)` returns the unclamped output and the stage outputs (B, C, frames, H, W) for feature matching
(`fastlight.decoder.distill`): the latent stage, then each spatial level.
The config also carries what `WanPipeline` reads from `pipe.vae.config` (z_dim, latents_mean, latents_std,
scale_factor_temporal, scale_factor_spatial), copied from the teacher by `from_teacher`. Decode only: it has
no encoder (`fastlight.data.latents._Vae` refuses to encode with it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from fastlight.data.latents import wan_vae_factors
from fastlight.errors import ModelError

WAN21_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
              0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN21_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
             3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


class TimeConv(nn.Module):
    """A causal k_t x 3 x 3 convolution over (B, C, T, h, w), front-padded by replicating frame 0, computed as
    one Conv2d on (B * T, k_t * C, h, w): the k_t time-shifted copies of the clip stacked on the channel axis
    (oneDNN's path on CPU; a Conv3d at batch 1 takes slow_conv3d, see the module docstring)."""

    def __init__(self, cin: int, cout: int, kt: int = 3):
        super().__init__()
        self.kt = kt
        self.conv = nn.Conv2d(kt * cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.kt > 1:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.kt - 1, -1, -1), x], dim=2)  # (B, C, T + kt - 1, h, w)
        # frame t sees padded frames t .. t + kt - 1 = input frames t - kt + 1 .. t
        shifted = torch.cat([x[:, :, i:i + t] for i in range(self.kt)], dim=1)  # (B, kt C, T, h, w)
        y = self.conv(shifted.transpose(1, 2).reshape(b * t, self.kt * c, h, w))  # (B T, cout, h, w)
        return y.view(b, t, -1, h, w).transpose(1, 2)


class TimeBlock(nn.Module):
    """Residual block of two causal TimeConvs at latent resolution."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1, self.conv2 = TimeConv(ch, ch), TimeConv(ch, ch)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Block2d(nn.Module):
    """Residual block of two 3x3 Conv2d on frames folded into the batch."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class SubPixelUp(nn.Module):
    """2x spatial: a 3x3 conv at the low resolution to 4 cout channels, then pixel shuffle (depth-to-space)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


class FastWanDecoder(ModelMixin, ConfigMixin):
    fastlight_decode_only = True  # no encoder: fastlight.data.latents._Vae decodes with it and refuses to encode

    @register_to_config
    def __init__(self, z_dim: int = 16, width: int = 16, latent_blocks: int = 1, spatial_blocks: int = 1,
                 time_levels: int = 0, temporal_factor: int = 4, spatial_factor: int = 8, out_channels: int = 3,
                 latents_mean: list | None = None, latents_std: list | None = None,
                 scale_factor_temporal: int | None = None, scale_factor_spatial: int | None = None):
        super().__init__()
        n = int(round(math.log2(spatial_factor)))
        if spatial_factor < 2 or 2 ** n != spatial_factor:
            raise ValueError(f"spatial_factor must be a power of 2 >= 2, got {spatial_factor}")
        if temporal_factor < 1 or width < 1:
            raise ValueError(f"temporal_factor and width must be >= 1, got {temporal_factor}, {width}")
        if latent_blocks < 0 or spatial_blocks < 0 or not 0 <= time_levels <= n:
            raise ValueError(f"latent_blocks and spatial_blocks must be >= 0 and time_levels in 0..{n}, got "
                             f"{latent_blocks}, {spatial_blocks}, {time_levels}")
        # what WanPipeline reads from vae.config: defaults = the Wan 2.1 VAE's; from_teacher copies the teacher's
        self.register_to_config(latents_mean=list(latents_mean or (WAN21_MEAN if z_dim == 16 else [0.0] * z_dim)),
                                latents_std=list(latents_std or (WAN21_STD if z_dim == 16 else [1.0] * z_dim)),
                                scale_factor_temporal=scale_factor_temporal or temporal_factor,
                                scale_factor_spatial=scale_factor_spatial or spatial_factor)
        chans = [width * 2 ** (n - 1 - k) for k in range(n)]  # level k at (2^k h, 2^k w): 2^(n-1) w ... w
        self.conv_in = TimeConv(z_dim, chans[0])
        self.latent = nn.Sequential(*[TimeBlock(chans[0]) for _ in range(latent_blocks)])
        self.to_time = nn.Conv3d(chans[0], temporal_factor * chans[0], 1)  # depth-to-time
        # the first time_levels levels mix time too (TimeBlock on the unfolded clip), the rest are per frame
        self.levels = nn.ModuleList([nn.Sequential(*[(TimeBlock if k < time_levels else Block2d)(c)
                                                     for _ in range(spatial_blocks)]) for k, c in enumerate(chans)])
        self.ups = nn.ModuleList([SubPixelUp(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.head = SubPixelUp(chans[-1], out_channels)  # the last 2x: no conv at full resolution

    @classmethod
    def from_teacher(cls, teacher_config, width: int = 16, **kw) -> "FastWanDecoder":
        """A FastWanDecoder for the latents of an AutoencoderKLWan (its config): the factors from its structure,
        the fields WanPipeline reads (z_dim, latents_mean / latents_std, scale_factor_*) copied."""
        c = teacher_config  # a dict or a diffusers FrozenDict config
        temporal, spatial = wan_vae_factors(c)
        return cls(z_dim=c["z_dim"], width=width, temporal_factor=temporal, spatial_factor=spatial,
                   latents_mean=list(c["latents_mean"]), latents_std=list(c["latents_std"]),
                   scale_factor_temporal=c.get("scale_factor_temporal") or temporal,
                   scale_factor_spatial=c.get("scale_factor_spatial") or spatial, **kw)

    def _run(self, z: torch.Tensor, feats: list | None = None) -> torch.Tensor:
        b, _, t, h, w = z.shape
        r = self.config.temporal_factor
        x = self.latent(self.conv_in(z))  # (B, C0, T, h, w)
        if feats is not None:
            feats.append(x)
        c = x.shape[1]
        y = self.to_time(x).view(b, r, c, t, h, w)  # (B, r C0, T, h, w) -> (B, r, C0, T, h, w)
        # frame r t + i of the clip before the cut is sub-frame i of latent frame t; drop latent frame 0's first r - 1
        y = y.permute(0, 3, 1, 2, 4, 5).reshape(b, t * r, c, h, w)[:, r - 1:]  # (B, F, C0, h, w)
        frames = y.shape[1]
        x = y.reshape(b * frames, c, h, w)  # frames folded into the batch from here on
        for k, level in enumerate(self.levels):
            if k < self.config.time_levels:  # causal in time: frame f sees frames <= f, so latent frames <= its own
                clip = level(x.view(b, frames, *x.shape[1:]).transpose(1, 2))  # (B, C_k, F, H_k, W_k)
                x = clip.transpose(1, 2).reshape(x.shape)  # (B F, C_k, H_k, W_k)
            else:
                x = level(x)
            if feats is not None:
                feats.append(x.view(b, frames, *x.shape[1:]).transpose(1, 2))  # (B, C_k, F, H_k, W_k)
            x = self.ups[k](x) if k < len(self.ups) else self.head(x)
        return x.view(b, frames, *x.shape[1:]).transpose(1, 2).contiguous()  # (B, 3, F, s h, s w)

    def stages(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Unclamped output and the stage outputs (the latent stage, then each spatial level), each (B, C, F, H, W)."""
        feats: list[torch.Tensor] = []
        return self._run(z, feats), feats

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        out = self._run(z.to(self.dtype)).clamp(-1.0, 1.0)
        return DecoderOutput(sample=out) if return_dict else (out,)

    def encode(self, *_a, **_k):
        """Refused in one line: decode only (an image-to-video pipeline encodes its first frame with the VAE)."""
        raise ModelError("FastWanDecoder is decode only (it has no encoder); encode with the teacher VAE (the full "
                         "pipeline's vae/), e.g. use the light decoder with a text-to-video pipeline")

    def forward(self, z):
        return self.decode(z).sample
