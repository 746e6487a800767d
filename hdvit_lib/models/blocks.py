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
#: What a lesion removes: ``paper`` (Fig. 10b: a 3x3 conv of a conv block, a whole MSA/MLP block)
#: or ``branch`` (the whole residual branch of any residual block).
LESION_MODES = ("paper", "branch")


@dataclass(eq=False)
class Block:
    """One step of a model's forward pass.

    name: a readable, unique name ("stage2.block3.msa").
    kind: one of ``KINDS``.
    module: maps the previous block's output to this block's output.
    shortcut: for residual blocks, the module that computes what remains when the residual
        branch is removed (``nn.Identity()`` or the projection shortcut); ``None`` for blocks
        that are not residual (these cannot be lesioned).
    lesion: what the paper's lesion study (Park & Kim 2022, Fig. 10b) runs in place of the block.
        Conv blocks: the block with one 3x3 conv (and its BatchNorm) replaced by the identity,
        ``None`` where that conv changes the shape (strided); the model sets it. Other kinds
        (MSA, MLP: the whole block is removed): defaults to ``shortcut``.
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
    lesion: nn.Module | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not one of {KINDS}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout={self.layout!r} is not one of {LAYOUTS}")
        if self.lesion is None and self.kind != "conv":
            self.lesion = self.shortcut

    def replacement(self, mode: str) -> nn.Module | None:
        """The module a lesion runs in place of this block: ``mode="branch"`` the shortcut
        (residual branch removed), ``mode="paper"`` :attr:`lesion`; None: cannot be lesioned."""
        if mode not in LESION_MODES:
            raise ValueError(f"mode={mode!r} is not one of {LESION_MODES}")
        return self.shortcut if mode == "branch" else self.lesion


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
    mode: str = "branch",
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``x`` through ``blocks`` in order.

    lesion: index of a block to lesion: ``mode="branch"`` removes its residual branch (its
        shortcut kept), ``mode="paper"`` runs ``Block.lesion`` instead (see :class:`Block`).
    keep: if True, also return the output of every block (in order).
    Returns ``(output, outputs)``; ``outputs`` is empty unless ``keep``.
    """
    outs: list[torch.Tensor] = []
    for i, b in enumerate(blocks):
        if i == lesion:
            replacement = b.replacement(mode)
            if replacement is None:
                raise ValueError(f"block {i} ({b.name}, kind {b.kind}) cannot be lesioned with mode={mode!r}")
            x = replacement(x)
        else:
            x = b.module(x)
        if keep:
            outs.append(x)
    return x, outs
