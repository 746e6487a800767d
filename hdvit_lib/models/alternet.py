"""AlterNet-50 for CIFAR (Park & Kim 2022, Sec. 4 / Fig. 11): a pre-activation ResNet-50 whose
last blocks of stages are replaced by MSA blocks, following the build-up rule (MSAs at the end
of a stage, alternating with Convs, more MSAs in late stages).

Stages (3, 4, 6, 4) of bottlenecks (widths 64/128/256/512, expansion 4); the CIFAR-100 model of
Fig. 11 has MSAs per stage (0, 1, 1, 2), heads (3, 6, 12, 24), 64 dims per head, and local
attention in non-overlapping 4x4 windows with a learned relative position bias (the official
``models/alternet.py`` ``AttentionBlockB`` + ``LocalAttention``; its default (0, 1, 3, 2) with
window 7 differs from the paper's CIFAR-100 figure). Module names mirror the official code.

As in the official code, conv blocks pre-activate with BatchNorm + ReLU and MSA blocks with
BatchNorm + GELU (``AttentionBlockB``'s ``activation=nn.GELU``, applied to ``norm1``'s output,
before the projection shortcut where there is one). ``drop_path_rate`` is stochastic depth on
every residual branch, ``rate * j / (blocks - 1)`` for block ``j`` counted over the whole model
(official ``AlterNet``: ``sd * j / (sum(num_blocks) - 1)``, ``sd: 0.1`` in
``configs/cifar100_vit.yaml``); off in eval mode.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .parts import check_len, divisors, drop_path_rates
from .resnet import StagedNet, WithoutConv3x3, drop_path


def _conv(c_in: int, c_out: int, k: int = 1, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


class _PreActShortcut(nn.Module):
    """What a pre-activation block keeps without its residual branch."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.shortcut, self.norm, self.relu = block.shortcut, block.pre_norm, block.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(self.relu(self.norm(x))) if len(self.shortcut) else x


class _PreActBlock(nn.Module):
    """``drop_path(branch(act(bn(x)))) + skip``, the skip taken after the activation when it projects.
    ``self.relu`` is the pre-activation (named as in the official code; GELU in MSA blocks)."""

    expansion = 4

    def _make_shortcut(self, c_in: int, c_out: int, stride: int, drop_path_rate: float = 0.0,
                       act: type[nn.Module] = nn.ReLU) -> None:
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut.append(_conv(c_in, c_out, 1, stride))
        self.relu = act()
        self.drop_path = drop_path(drop_path_rate)

    @property
    def pre_norm(self) -> nn.Module:
        raise NotImplementedError

    def branch(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        a = self.relu(self.pre_norm(x))
        skip = self.shortcut(a) if len(self.shortcut) else x
        return self.drop_path(self.branch(a, without_3x3)) + skip

    def lesioned(self) -> nn.Module:
        return _PreActShortcut(self)

    def conv_lesioned(self) -> nn.Module | None:
        return None


class PreActBottleneck(_PreActBlock):
    """Pre-activation bottleneck (official ``preresnet_dnn_block.Bottleneck``). Its lesion for the
    paper's study drops the whole pre-activation 3x3 unit ``conv2`` (BatchNorm, ReLU, 3x3 conv),
    where it is not strided."""

    def __init__(self, c_in: int, channels: int, stride: int = 1, drop_path_rate: float = 0.0,
                 **_: object) -> None:
        super().__init__()
        self._make_shortcut(c_in, channels * 4, stride, drop_path_rate)
        self.stride = stride
        self.bn = nn.BatchNorm2d(c_in)
        self.conv1 = _conv(c_in, channels)
        self.conv2 = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), _conv(channels, channels, 3, stride))
        self.conv3 = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), _conv(channels, channels * 4))

    @property
    def pre_norm(self) -> nn.Module:
        return self.bn

    def branch(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        h = self.conv1(x)
        return self.conv3(h if without_3x3 else self.conv2(h))

    def conv_lesioned(self) -> nn.Module | None:
        return None if self.stride != 1 else WithoutConv3x3(self)


class _Attention2d(nn.Module):
    """Multi-head self-attention over the pixels of (B, C, H, W) windows, with an additive bias."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.fused_attn = True
        self.to_q = nn.Conv2d(dim_in, heads * dim_head, 1, bias=False)
        self.to_kv = nn.Conv2d(dim_in, 2 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(heads * dim_head, dim_out, 1))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, heads*d, h, w) -> (B, heads, h*w, d)
            return t.reshape(b, self.heads, -1, h * w).transpose(-1, -2)

        q, (k, v) = heads(self.to_q(x)), map(heads, self.to_kv(x).chunk(2, dim=1))
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        else:
            out = ((q @ k.transpose(-1, -2)) * self.scale + bias).softmax(dim=-1) @ v
        return self.to_out(out.transpose(-1, -2).reshape(b, -1, h, w))


class LocalAttention(nn.Module):
    """Attention inside non-overlapping ``window x window`` windows of a feature map, with a learned
    relative position bias shared by the heads (official ``LocalAttention``)."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, dim_head: int, window: int) -> None:
        super().__init__()
        self.attn = _Attention2d(dim_in, dim_out, heads, dim_head)
        self.window = window
        pos = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"), -1).reshape(-1, 2)
        self.register_buffer("rel_index", pos[None, :, :] - pos[:, None, :] + window - 1, persistent=False)
        self.pos_embedding = nn.Parameter(torch.randn(2 * window - 1, 2 * window - 1) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.window
        n1, n2 = h // p, w // p
        bias = self.pos_embedding[self.rel_index[..., 0], self.rel_index[..., 1]]
        x = x.reshape(b, c, n1, p, n2, p).permute(0, 2, 4, 1, 3, 5).reshape(b * n1 * n2, c, p, p)
        x = self.attn(x, bias)
        c = x.shape[1]
        return x.reshape(b, n1, n2, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


class MSABlock(_PreActBlock):
    """Pre-activation MSA block (official ``AttentionBlockB``): bn-gelu, 1x1 conv to C/4, bn,
    local MSA back to the block's output width."""

    kind = "msa"

    def __init__(self, c_in: int, channels: int, stride: int = 1, heads: int = 8, dim_head: int = 64,
                 window: int = 4, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        width = c_in // 4
        self._make_shortcut(c_in, channels * 4, stride, drop_path_rate, act=nn.GELU)
        self.norm1 = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, width, 1, stride=stride, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.attn = LocalAttention(width, channels * 4, heads, dim_head, window)

    @property
    def pre_norm(self) -> nn.Module:
        return self.norm1

    def branch(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        return self.attn(self.norm2(self.conv(x)))


class _BNGAPHead(nn.Module):
    """bn, relu, global average pooling, linear (official ``BNGAPBlock``)."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.bn, self.relu, self.dense = nn.BatchNorm2d(c_in), nn.ReLU(), nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.relu(self.bn(x)).mean(dim=(2, 3)))


def msa_positions_from_counts(num_blocks: Sequence[int], msa_per_stage: Sequence[int]) -> list[list[int]]:
    """The official placement: the last ``2m`` blocks of a stage alternate Conv, MSA (m MSAs)."""
    out = []
    for n, m in zip(num_blocks, msa_per_stage):
        if not 0 <= 2 * m <= n:
            raise ValueError(f"msa_per_stage={tuple(msa_per_stage)}: a stage of {n} blocks holds 0 to {n // 2} "
                             f"MSAs (they alternate with Convs)")
        out.append([n - 2 * m + 2 * k + 1 for k in range(m)])
    return out


class AlterNet(StagedNet):
    """Pre-activation ResNet with MSA blocks at ``msa_positions[stage]`` (block indices)."""

    def __init__(self, num_blocks: Sequence[int] = (3, 4, 6, 4), msa_per_stage: Sequence[int] = (0, 1, 1, 2),
                 msa_positions: Sequence[Sequence[int]] | None = None, heads: Sequence[int] = (3, 6, 12, 24),
                 widths: Sequence[int] = (64, 128, 256, 512), dim_head: int = 64, window: int = 4,
                 num_classes: int = 10, img_size: int = 32, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        n = len(num_blocks)
        for name, v in (("heads", heads), ("widths", widths), ("msa_per_stage", msa_per_stage)):
            check_len(name, v, n)
        if msa_positions is None:
            msa_positions = msa_positions_from_counts(num_blocks, msa_per_stage)
        check_len("msa_positions", msa_positions, n)
        self.msa_positions = [sorted(int(j) for j in pos) for pos in msa_positions]
        for i, (pos, nb) in enumerate(zip(self.msa_positions, num_blocks)):
            if any(not 0 <= j < nb for j in pos):
                raise ValueError(f"msa_positions[{i}]={pos}: stage {i} has blocks 0..{nb - 1}")
            side = img_size // 2**i
            if pos and (window > side or side % window):
                valid = ", ".join(map(str, divisors(side)))
                raise ValueError(f"window={window} does not tile stage {i}'s {side}x{side} feature map "
                                 f"(it has MSAs); choose one of {valid}")
        self.layer0 = nn.Sequential(OrderedDict(layer0=nn.Sequential(_conv(3, widths[0], 3))))
        c_in = widths[0]
        rates = iter(drop_path_rates(drop_path_rate, sum(num_blocks)))
        for i, (nb, w) in enumerate(zip(num_blocks, widths)):
            seq: list[nn.Module] = []
            for j in range(nb):
                stride = 2 if (i > 0 and j == 0) else 1
                if j in self.msa_positions[i]:
                    seq.append(MSABlock(c_in, w, stride, heads=heads[i], dim_head=dim_head, window=window,
                                        drop_path_rate=next(rates)))
                else:
                    seq.append(PreActBottleneck(c_in, w, stride, drop_path_rate=next(rates)))
                c_in = w * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*seq))
        self.num_stages = n
        self.classifier = nn.Sequential(_BNGAPHead(c_in, num_classes))
