"""PiT-Ti for 32x32 inputs (timm ``PoolingVisionTransformer``; Heo et al. 2021).

The authors' CIFAR-100 PiT-Ti (``official_checkpoints/pit_ti_cifar100.json``): patch 2 with
stride 1 (a 31x31 token grid), base dims (32, 32, 32), depths (2, 6, 4), heads (2, 4, 8), i.e.
widths 64/128/256 on 31x31 -> 16x16 -> 8x8 grids. timm 1.0 keeps the same parameters but puts
each depth-wise pooling at the start of the next stage (``transformers.{i+1}.pool``, where timm
0.5.4 had ``transformers.{i}.pool``); ``hdvit_lib.pretrained`` maps the keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models.pit import PoolingVisionTransformer
from torch import nn

from .blocks import Block
from .parts import TokensToMap, check_len
from .vit import ClassTokenHead, transformer_blocks


class _Embed(nn.Module):
    """Overlapping conv patch embedding + 2-D position embedding, then class token."""

    def __init__(self, pit: PoolingVisionTransformer) -> None:
        super().__init__()
        self.conv, self.pos_drop, self.norm = pit.patch_embed, pit.pos_drop, pit.transformers[0].norm
        self.pos_embed, self.cls_token = pit.pos_embed, pit.cls_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.conv(x) + self.pos_embed).flatten(2).transpose(1, 2)
        return self.norm(torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1))


def check_pooling_widths(base_dims: Sequence[int], heads: Sequence[int]) -> None:
    """Raise unless PiT's widths (``base_dims[i] * heads[i]``, so the heads always divide them) fit
    its pooling: a depth-wise conv with ``groups`` = the stage's width, whose output width (the next
    stage's) must be a multiple of it. Every value must be positive."""
    if any(int(v) < 1 for v in (*base_dims, *heads)):
        raise ValueError(f"base_dims={tuple(base_dims)}, heads={tuple(heads)}: every entry must be >= 1")
    widths = [int(d) * int(h) for d, h in zip(base_dims, heads)]
    for i in range(len(widths) - 1):
        if widths[i + 1] % widths[i]:
            raise ValueError(
                f"heads={tuple(heads)} with base_dims={tuple(base_dims)} give the widths {tuple(widths)} "
                f"(base_dim x heads): PiT pools stage {i} into stage {i + 1} with a depth-wise conv "
                f"({widths[i]} groups), so {widths[i + 1]} must be a multiple of {widths[i]}; choose heads where "
                f"each width is a multiple of the previous (the paper's: (2, 4, 8) with (32, 32, 32))")


class PiT(PoolingVisionTransformer):
    """PoolingVisionTransformer with the zoo's block listing."""

    def __init__(self, img_size: int = 32, patch_size: int = 2, stride: int = 1,
                 base_dims: Sequence[int] = (32, 32, 32), depth: Sequence[int] = (2, 6, 4),
                 heads: Sequence[int] = (2, 4, 8), mlp_ratio: float = 4.0, num_classes: int = 10,
                 drop_path_rate: float = 0.0) -> None:
        check_len("depth", depth, len(base_dims))
        check_len("heads", heads, len(base_dims))
        check_pooling_widths(base_dims, heads)
        if not 1 <= patch_size <= img_size or not 1 <= stride <= patch_size:
            raise ValueError(f"patch_size={patch_size}, stride={stride}: need 1 <= stride <= patch_size <= "
                             f"img_size={img_size}")
        super().__init__(img_size=img_size, patch_size=patch_size, stride=stride, base_dims=list(base_dims),
                         depth=list(depth), heads=list(heads), mlp_ratio=mlp_ratio, num_classes=num_classes,
                         drop_path_rate=drop_path_rate)

    def blocks(self) -> list[Block]:
        """embed, (msa, mlp) per transformer block, pool between stages, head."""
        out = [Block("embed", "embed", _Embed(self), layout="tokens", prefix_tokens=1, stage=0)]
        for i, stage in enumerate(self.transformers):
            if stage.pool is not None:
                pool = nn.Sequential(TokensToMap(stage.pool.conv, stage.pool.fc), stage.norm)
                out.append(Block(f"stage{i}.pool", "pool", pool, layout="tokens", prefix_tokens=1, stage=i))
            for j, blk in enumerate(stage.blocks):
                out += transformer_blocks(blk, f"stage{i}.block{j}", stage=i)
        head = ClassTokenHead(self.norm, self.head, self.head_drop)
        out.append(Block("head", "head", head, layout="vector", stage=len(self.transformers) - 1))
        return out
