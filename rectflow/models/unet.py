"""A small DDPM-style U-Net velocity field for images.

Layout (Ho et al. 2020, scaled down): a stem conv, then per level ``num_res_blocks`` residual
blocks and a stride-2 downsampling conv, a middle of two residual blocks, and a mirrored up path
whose blocks read the matching down-path activations as skip connections. Every residual block is
conditioned on t through a shared time MLP; self-attention follows the blocks at the
resolutions listed in ``attn_resolutions`` (the middle included). The output conv starts at
zero, so an untrained model predicts v = 0.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import RowDropout
from .embedding import (LEGACY_TIME_SCALE, MAX_PERIOD, LabelEmbedding, TimeEmbedding,
                        interval_times, no_labels)


def _norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups, always a divisor of ``ch``."""
    return nn.GroupNorm(math.gcd(ch, min(8, ch)), ch)


class Attention(nn.Module):
    """Single-head self-attention over the H*W positions, added to its input."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, HW, C]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Block(nn.Module):
    """Residual block conditioned on the time embedding, optionally followed by attention."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float, attn: bool):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(emb, cout))
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = RowDropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attn = Attention(cout) if attn else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.attn(self.skip(x) + h)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """v(x, t) for images x of shape [B, channels, resolution, resolution] and t of shape [B].

    Level i has ``width * mults[i]`` channels and resolution ``resolution / 2**i``. All
    arguments are plain JSON values so the model can be rebuilt with ``UNet(**config)``;
    ``time_scale``/``max_period`` default to the legacy time features (see ``embedding``).
    With ``num_classes`` a label embedding is added to the time embedding, so every block is
    conditioned on both (``y=None`` is the "no label" class).

    ``interval=True`` makes it an average-velocity model ``u(x, t, r=r)`` over [r, t]: the time
    MLP reads the start r, and a second MLP of the length t - r (``gap_mlp``, whose last layer
    starts at zero) is added to its output; a new interval model thus computes v(x, r), and a
    flow model's weights load into it unchanged.
    """

    def __init__(self, channels: int, resolution: int, width: int = 32,
                 mults: tuple[int, ...] | list[int] = (1, 2), num_res_blocks: int = 1,
                 attn_resolutions: tuple[int, ...] | list[int] = (), dropout: float = 0.0,
                 time_embed: int = 64, time_scale: float = LEGACY_TIME_SCALE,
                 max_period: float = MAX_PERIOD, interval: bool = False,
                 num_classes: int | None = None):
        super().__init__()
        levels = len(mults)
        if levels == 0:
            raise ValueError("mults must list at least one level, e.g. [1, 2]")
        factor = 2 ** (levels - 1)
        if resolution % factor:
            raise ValueError(
                f"resolution {resolution} is not divisible by 2**(len(mults)-1) = {factor}; "
                f"use fewer levels than mults={list(mults)} or a resolution that halves "
                f"{levels - 1} times")
        used = [resolution // 2 ** i for i in range(levels)]
        unknown = sorted(set(attn_resolutions) - set(used))
        if unknown:
            raise ValueError(f"attn_resolutions {unknown} never occur; this U-Net runs at {used}")
        attn = set(attn_resolutions)
        emb = 4 * width

        self.embed = TimeEmbedding(time_embed, max_period, time_scale)
        self.time_mlp = nn.Sequential(nn.Linear(time_embed, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = LabelEmbedding(num_classes, emb) if num_classes else None
        self.interval = bool(interval)
        if self.interval:
            self.gap_mlp = nn.Sequential(nn.Linear(time_embed, emb), nn.SiLU(),
                                         nn.Linear(emb, emb))
            nn.init.zeros_(self.gap_mlp[-1].weight)
            nn.init.zeros_(self.gap_mlp[-1].bias)
        self.stem = nn.Conv2d(channels, width, 3, padding=1)

        self.down = nn.ModuleList()
        skips, ch, res = [width], width, resolution
        for i, m in enumerate(mults):
            for _ in range(num_res_blocks):
                self.down.append(Block(ch, width * m, emb, dropout, res in attn))
                ch = width * m
                skips.append(ch)
            if i < levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
                res //= 2

        self.mid = nn.ModuleList([Block(ch, ch, emb, dropout, res in attn),
                                  Block(ch, ch, emb, dropout, False)])

        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(Block(ch + skips.pop(), width * m, emb, dropout, res in attn))
                ch = width * m
            if i > 0:
                self.up.append(Upsample(ch))
                res *= 2

        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        start, gap = interval_times(t, r, self.interval)
        emb = self.time_mlp(self.embed(start).to(x.dtype))
        if gap is not None:
            emb = emb + self.gap_mlp(self.embed(gap).to(x.dtype))
        if self.label is None:
            no_labels(y)
        else:
            emb = emb + self.label(y, x.shape[0], x.device).to(x.dtype)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Block) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(layer, Block) else layer(h)
        return self.out(h)
