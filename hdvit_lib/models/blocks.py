"""The block listing every model exposes (the design's "models know their own structure").

A model ``m`` in the zoo has ``m.blocks() -> list[Block]``. Feeding an input through
``block.module`` for every block in order reproduces ``m(x)`` exactly in eval mode. Every
per-layer analysis (Fourier, variance, lesion, CKA) is written once on top of this list and
never special-cases a model by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

KINDS = ("embed", "conv", "msa", "mlp", "pool", "head")
LAYOUTS = ("nchw", "nhwc", "tokens", "vector")


@dataclass(eq=False)
class Block:
    """One step of a model's forward pass.

    name: a readable, unique name ("stage2.block3.msa").
    kind: one of ``KINDS``.
    module: maps the previous block's output to this block's output.
    shortcut: for residual blocks, the module that computes what remains when the residual
        branch is removed (``nn.Identity()`` or the projection shortcut); ``None`` for blocks
        that are not residual (these cannot be lesioned).
    layout: how the output is laid out: "nchw" feature map, "nhwc" feature map, "tokens"
        (B, N, C) with ``prefix_tokens`` leading class/distillation tokens followed by a square
        grid of patch tokens, or "vector" (B, C) (pooled features, logits).
    prefix_tokens: number of leading non-spatial tokens (for layout "tokens").
    stage: index of the stage the block belongs to (for shading subsampling in plots).
    """

    name: str
    kind: str
    module: nn.Module
    shortcut: nn.Module | None = None
    layout: str = "nchw"
    prefix_tokens: int = 0
    stage: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not one of {KINDS}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout={self.layout!r} is not one of {LAYOUTS}")


def as_feature_map(x: torch.Tensor, block: Block) -> torch.Tensor | None:
    """Return a block output as a (B, C, H, W) feature map, or None for "vector" outputs.

    Tokens drop their ``prefix_tokens`` (class token) and are reshaped to a square grid.
    """
    if block.layout == "nchw":
        return x
    if block.layout == "nhwc":
        return x.permute(0, 3, 1, 2)
    if block.layout == "tokens":
        t = x[:, block.prefix_tokens :, :]
        n = t.shape[1]
        side = round(n**0.5)
        if side * side != n:
            raise ValueError(f"{block.name}: {n} patch tokens do not form a square grid")
        return t.transpose(1, 2).reshape(x.shape[0], x.shape[2], side, side)
    return None


def run_blocks(
    blocks: list[Block],
    x: torch.Tensor,
    lesion: int | None = None,
    keep: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``x`` through ``blocks`` in order.

    lesion: index of a residual block whose residual branch is removed (its shortcut kept).
    keep: if True, also return the output of every block (in order).
    Returns ``(output, outputs)``; ``outputs`` is empty unless ``keep``.
    """
    outs: list[torch.Tensor] = []
    for i, b in enumerate(blocks):
        if i == lesion:
            if b.shortcut is None:
                raise ValueError(f"block {i} ({b.name}, kind {b.kind}) is not residual: it cannot be lesioned")
            x = b.shortcut(x)
        else:
            x = b.module(x)
        if keep:
            outs.append(x)
    return x, outs
