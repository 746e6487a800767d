"""ViT-Ti for 32x32 inputs (timm ``VisionTransformer``) and its local-attention variant.

``vit_ti``: embed 192, depth 12, 3 heads, class token, no qkv bias (the authors' CIFAR-100
checkpoint, ``official_checkpoints/vit_ti_cifar100.json``: its keys load directly).

``vit_local``: the same, but every MSA lets a patch token attend only to the ``window x window``
neighbourhood of patch tokens around it (plus the class token); the class token attends to
all tokens (Park & Kim 2022, Sec. 3 / Fig. 3 "local MSA"). Implemented as an additive
``-inf`` mask, so a token's output has exactly zero gradient outside its window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .blocks import Block
from .parts import Residual, check_heads, check_patch


def window_start(pos: torch.Tensor, window: int, grid: int) -> torch.Tensor:
    """First row (or column) of the window around ``pos``: centred, shifted inside the grid at borders."""
    return (pos - window // 2).clamp(0, grid - window)


def neighbourhood_mask(grid: int, window: int, prefix_tokens: int = 1) -> torch.Tensor:
    """Additive attention mask (N, N), N = prefix + grid**2: 0 where allowed, -inf elsewhere.

    Patch token (r, c) may attend to the ``window x window`` patch tokens with rows
    ``s(r) .. s(r) + window - 1`` and columns ``s(c) ..``, ``s(p) = clamp(p - window // 2, 0,
    grid - window)`` (centred; shifted inside the grid near its borders, as in neighbourhood
    attention, so that every token sees exactly window**2 patch tokens), and to every prefix token;
    prefix tokens attend to everything. ``window == grid`` is global attention.
    """
    pos = torch.arange(grid)
    start = window_start(pos, window, grid)
    rows_ok = (pos[None, :] >= start[:, None]) & (pos[None, :] < start[:, None] + window)  # (query, key)
    near = (rows_ok[:, None, :, None] & rows_ok[None, :, None, :]).reshape(grid * grid, grid * grid)
    n = prefix_tokens + grid * grid
    allowed = torch.ones(n, n, dtype=torch.bool)
    allowed[prefix_tokens:, prefix_tokens:] = near
    return torch.zeros(n, n).masked_fill(~allowed, float("-inf"))


def check_window(window: int, grid: int) -> None:
    """Raise unless ``window`` is odd and at most ``grid`` (or equal to ``grid``: global attention)."""
    if not (1 <= window <= grid and (window % 2 == 1 or window == grid)):
        odd = ", ".join(str(k) for k in range(1, grid + 1, 2))
        raise ValueError(
            f"window={window} is invalid for the {grid}x{grid} patch grid: choose an odd size "
            f"({odd}) or {grid} (global attention)"
        )


class LocalAttention(Attention):
    """timm ``Attention`` restricted by a fixed neighbourhood mask (same parameters: qkv, proj).

    With ``fused_attn`` False the plain softmax path runs, which supports double backward.
    """

    def __init__(self, dim: int, num_heads: int, grid: int, window: int, qkv_bias: bool = False) -> None:
        super().__init__(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.grid, self.window = grid, window
        self.register_buffer("mask", neighbourhood_mask(grid, window), persistent=False)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        b, n, _c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = self.mask.to(q.dtype)
        if attn_mask is not None:
            mask = mask + attn_mask
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.attn_drop.p if self.training else 0.0
            )
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1) + mask
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, self.attn_dim)))


class _Embed(nn.Module):
    """Patch embedding, class token, position embedding (timm's default ``_pos_embed`` path)."""

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        self.patch_embed, self.pos_drop = vit.patch_embed, vit.pos_drop
        self.patch_drop, self.norm_pre = vit.patch_drop, vit.norm_pre
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.norm_pre(self.patch_drop(self.pos_drop(x)))


class ClassTokenHead(nn.Module):
    """``head(drop(norm(x[:, 0])))``: final norm, class-token pooling, classifier."""

    def __init__(self, norm: nn.Module, head: nn.Module, drop: nn.Module | None = None) -> None:
        super().__init__()
        self.norm, self.head, self.drop = norm, head, drop or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.norm(x[:, 0])))


class AvgPoolHead(nn.Module):
    """``head(drop(fc_norm(mean_i x[:, prefix + i])))``: the global-average-pooling (GAP) classifier,
    in timm's order for ``global_pool="avg"``: the mean of the patch tokens (prefix tokens such as the
    class token left out), then the norm (timm's ``fc_norm``), dropout and the classifier."""

    def __init__(self, norm: nn.Module, head: nn.Module, drop: nn.Module | None = None,
                 prefix_tokens: int = 1) -> None:
        super().__init__()
        self.norm, self.head, self.drop = norm, head, drop or nn.Identity()
        self.prefix_tokens = prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.norm(x[:, self.prefix_tokens:].mean(dim=1))))


#: The ViT's classifiers: class token (``"token"``, the paper's ViT) or global average pooling of
#: the patch tokens (``"avg"``, the GAP classifier of the paper's Fig. 6).
GLOBAL_POOLS = ("token", "avg")


def transformer_blocks(blk: nn.Module, name: str, stage: int = 0, layout: str = "tokens",
                       prefix_tokens: int = 1) -> list[Block]:
    """Split a timm pre-norm ``Block`` into its ``msa`` and ``mlp`` residual halves."""
    msa = Residual(nn.Sequential(blk.norm1, blk.attn, blk.ls1, blk.drop_path1))
    mlp = Residual(nn.Sequential(blk.norm2, blk.mlp, blk.ls2, blk.drop_path2))
    kw = {"shortcut": nn.Identity(), "layout": layout, "prefix_tokens": prefix_tokens, "stage": stage}
    return [Block(f"{name}.msa", "msa", msa, **kw), Block(f"{name}.mlp", "mlp", mlp, **kw)]


class ViT(VisionTransformer):
    """timm ``VisionTransformer`` with a class token, optionally with local (windowed) MSAs.

    ``global_pool``: the classifier reads the class token (``"token"``) or the mean of the patch
    tokens (``"avg"``, a GAP classifier; the class token is still there and attended to, as in
    timm). With ``"avg"`` timm moves the final LayerNorm after the pooling (``fc_norm``).

    ``model.blocks()`` is the zoo's block listing, so timm's ``blocks`` container is renamed
    ``transformer`` (keys ``transformer.N.*``; ``hdvit_lib.pretrained`` maps the authors'
    ``blocks.N.*``). timm's ``forward_intermediates`` is not supported.
    """

    def __init__(self, img_size: int = 32, patch_size: int = 2, embed_dim: int = 192, depth: int = 12,
                 num_heads: int = 3, num_classes: int = 10, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 window: int | None = None, drop_path_rate: float = 0.0, global_pool: str = "token") -> None:
        if global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool={global_pool!r} is not a ViT classifier; choose one of "
                             f"{', '.join(map(repr, GLOBAL_POOLS))} (class token, global average pooling)")
        check_patch(patch_size, img_size)
        check_heads([embed_dim], [num_heads])
        grid = img_size // patch_size
        if window is not None:
            check_window(window, grid)
        super().__init__(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                         num_heads=num_heads, num_classes=num_classes, mlp_ratio=mlp_ratio,
                         qkv_bias=qkv_bias, class_token=True, global_pool=global_pool,
                         drop_path_rate=drop_path_rate)
        # Re-register timm's nn.Sequential under a name that does not clash with blocks(): a module
        # shadowed by a method breaks get_submodule and torch.func.functional_call.
        self.transformer = self._modules.pop("blocks")
        self.window = window
        if window is not None:
            for blk in self.transformer:
                local = LocalAttention(embed_dim, num_heads, grid, window, qkv_bias=qkv_bias)
                local.load_state_dict(blk.attn.state_dict())
                blk.attn = local

    def forward_features(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                         is_causal: bool = False) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        for blk in self.transformer:
            x = blk(x, attn_mask=attn_mask, is_causal=is_causal) if attn_mask is not None else blk(x)
        return self.norm(x)

    def blocks(self) -> list[Block]:  # type: ignore[override]
        """embed, (msa, mlp) x depth, head."""
        out = [Block("embed", "embed", _Embed(self), layout="tokens", prefix_tokens=1)]
        for i, blk in enumerate(self.transformer):
            out += transformer_blocks(blk, f"block{i}")
        if self.global_pool == "avg":  # timm: norm is Identity, fc_norm after the pooling
            head: nn.Module = AvgPoolHead(nn.Sequential(self.norm, self.fc_norm), self.head, self.head_drop,
                                          self.num_prefix_tokens)
        else:
            head = ClassTokenHead(nn.Sequential(self.norm, self.fc_norm), self.head, self.head_drop)
        out.append(Block("head", "head", head, layout="vector"))
        return out
