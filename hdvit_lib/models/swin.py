"""Swin-Ti for 32x32 inputs (timm ``SwinTransformer``; Liu et al. 2021).

The authors' CIFAR-100 Swin-Ti (``official_checkpoints/swin_ti_cifar100.json``): patch 1,
window 4, embed 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24), no qkv bias; feature maps
32 -> 16 -> 8 -> 4, so the last stage's window covers its whole map (global attention, no shift).
``drop_path_rate``: the zoo sets the authors' 0.1 for the paper-size model (analyses run in eval mode, where it is off).

timm 1.0 runs patch merging at the start of stages 1-3 (``layers.{i+1}.downsample``; timm 0.5.4
had it at the end, ``layers.{i}.downsample``) and names the classifier ``head.fc``; the
parameters are the same and ``hdvit_lib.pretrained`` maps the keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from .blocks import Block
from .parts import Residual, check_heads, check_len, check_patch, divisors


class _WindowAttention(nn.Module):
    """The (shifted) window attention of one timm ``SwinTransformerBlock`` (its ``_attn``)."""

    def __init__(self, blk: nn.Module) -> None:
        super().__init__()
        self.attn = blk.attn  # registered so that .parameters() lists the block's attention weights
        self._owner = [blk]  # not registered: shift, window and mask are read from the block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._owner[0]._attn(x)


class Swin(SwinTransformer):
    """SwinTransformer with the zoo's block listing (all outputs NHWC until the head)."""

    def __init__(self, img_size: int = 32, patch_size: int = 1, window_size: int = 4, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 mlp_ratio: float = 4.0, qkv_bias: bool = False, num_classes: int = 10,
                 drop_path_rate: float = 0.0) -> None:
        check_patch(patch_size, img_size)
        check_len("num_heads", num_heads, len(depths))
        check_heads([embed_dim * 2**i for i in range(len(depths))], num_heads)
        grid = img_size // patch_size
        if not 1 <= window_size <= grid:
            raise ValueError(f"window_size={window_size} is larger than the first feature map "
                             f"({grid}x{grid}); choose one of {', '.join(map(str, divisors(grid)))}")
        super().__init__(img_size=img_size, patch_size=patch_size, window_size=window_size, embed_dim=embed_dim,
                         depths=tuple(depths), num_heads=tuple(num_heads), mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                         num_classes=num_classes, drop_path_rate=drop_path_rate)

    def blocks(self) -> list[Block]:
        """embed, per stage (pool,) (msa, mlp) per Swin block, head."""
        kw = {"layout": "nhwc"}
        out = [Block("embed", "embed", self.patch_embed, stage=0, **kw)]
        for i, stage in enumerate(self.layers):
            if not isinstance(stage.downsample, nn.Identity):
                out.append(Block(f"stage{i}.pool", "pool", stage.downsample, stage=i, **kw))
            for j, blk in enumerate(stage.blocks):
                msa = Residual(nn.Sequential(blk.norm1, _WindowAttention(blk), blk.drop_path1))
                mlp = Residual(nn.Sequential(blk.norm2, blk.mlp, blk.drop_path2))
                out.append(Block(f"stage{i}.block{j}.msa", "msa", msa, shortcut=nn.Identity(), stage=i, **kw))
                out.append(Block(f"stage{i}.block{j}.mlp", "mlp", mlp, shortcut=nn.Identity(), stage=i, **kw))
        head = nn.Sequential(self.norm, self.head)
        out.append(Block("head", "head", head, layout="vector", stage=len(self.layers) - 1))
        return out
