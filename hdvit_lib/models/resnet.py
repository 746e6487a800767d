"""ResNet-18/50 for 32x32 inputs (3x3 stem, no max-pool), post-activation (He et al. 2016).

Module names follow the authors' ``models/resnet.py`` (``dnn_50(num_classes=100, stem=False)``)
so that their released CIFAR-100 checkpoint loads with ``model.load_state_dict`` directly:
``layer0.{0,1}``, ``layerI.J.shortcut.{0,1}``, ``layerI.J.convK.{0,1}``, ``classifier.0.dense``.

``drop_path_rate``: stochastic depth on the residual branches, rising linearly over all blocks
(``parts.drop_path_rates``), as the authors' ``ResNet`` consumes ``model.block.sd`` of
``configs/cifar100_vit.yaml``; off in eval mode.

Lesion study (Fig. 10b): ``conv_lesioned()`` is the block with one 3x3 conv (and its BatchNorm)
replaced by the identity: ``conv2`` of a bottleneck (None where it is strided: the shapes change),
the second 3x3 conv (``conv2``, never strided, same width) of a basic block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import DropPath
from torch import nn

from .blocks import Block
from .parts import drop_path_rates


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class WithoutConv3x3(nn.Module):
    """A residual block run with its lesionable 3x3 conv replaced by the identity
    (``block.forward(x, without_3x3=True)``); holds a reference to the block."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, without_3x3=True)


def drop_path(rate: float) -> nn.Module:
    """timm ``DropPath`` (per-sample, rescaled by ``1 / (1 - rate)``, identity in eval mode), or
    ``nn.Identity`` at rate 0."""
    return DropPath(rate) if rate > 0 else nn.Identity()


class _ResidualBlock(nn.Module):
    """Shared forward: ``relu(drop_path(branch(x)) + shortcut(x))``."""

    expansion = 1

    def _make_shortcut(self, c_in: int, c_out: int, stride: int, drop_path_rate: float = 0.0) -> None:
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = _conv_bn(c_in, c_out, 1, stride, relu=False)
        self.relu = nn.ReLU()
        self.drop_path = drop_path(drop_path_rate)

    def branch(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        return self.relu(self.drop_path(self.branch(x, without_3x3)) + self.shortcut(x))

    def lesioned(self) -> nn.Module:
        """The block with its residual branch removed: ``relu(shortcut(x))``."""
        return nn.Sequential(self.shortcut, self.relu)

    def conv_lesioned(self) -> nn.Module | None:
        """The block with one 3x3 conv and its BatchNorm replaced by the identity (the paper's
        ResNet lesion), or None where that conv changes the shape."""
        return WithoutConv3x3(self)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions."""

    expansion = 1

    def __init__(self, c_in: int, channels: int, stride: int = 1, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self._make_shortcut(c_in, channels, stride, drop_path_rate)
        self.conv1 = _conv_bn(c_in, channels, 3, stride)
        self.conv2 = _conv_bn(channels, channels, 3, relu=False)

    def branch(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        h = self.conv1(x)
        return h if without_3x3 else self.conv2(h)  # conv2 keeps the shape in every block


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, c_in: int, channels: int, stride: int = 1, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self._make_shortcut(c_in, channels * 4, stride, drop_path_rate)
        self.stride = stride
        self.conv1 = _conv_bn(c_in, channels, 1)
        self.conv2 = _conv_bn(channels, channels, 3, stride)
        self.conv3 = _conv_bn(channels, channels * 4, 1, relu=False)

    def branch(self, x: torch.Tensor, without_3x3: bool = False) -> torch.Tensor:
        h = self.conv1(x)
        # conv2's ReLU is dropped with it: its input is conv1's ReLU output already.
        return self.conv3(h if without_3x3 else self.conv2(h))

    def conv_lesioned(self) -> nn.Module | None:
        return None if self.stride != 1 else WithoutConv3x3(self)


class GAPHead(nn.Module):
    """Global average pooling + linear classifier (official ``GAPBlock``)."""

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dense = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.gap(x).flatten(1))


class StagedNet(nn.Module):
    """Shared surface of the CNNs: ``layer0`` stem, ``layer1..N`` stages, ``classifier`` head.

    Subclasses set ``num_stages``; each residual block provides ``lesioned()`` (branch removed),
    ``conv_lesioned()`` (3x3 conv removed, or None; the paper's lesion of a conv block) and
    optionally a class attribute ``kind`` ("conv" by default, "msa" for AlterNet's attention
    blocks, whose paper lesion is the branch removal).
    """

    num_stages: int

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer0(x)
        for stage in self.stages():
            x = stage(x)
        return self.classifier(x)

    def blocks(self) -> list[Block]:
        """Stem (embed), one ``conv`` (or ``msa``) block per residual block, head."""
        out = [Block("stem", "embed", self.layer0, layout="nchw", stage=0)]
        for i, stage in enumerate(self.stages()):
            for j, blk in enumerate(stage):
                kind = getattr(blk, "kind", "conv")
                paper = blk.conv_lesioned() if kind == "conv" else None
                out.append(Block(f"stage{i + 1}.block{j}.{kind}", kind, blk, shortcut=blk.lesioned(),
                                 lesion=paper, stage=i))
        out.append(Block("head", "head", self.classifier, layout="vector", stage=self.num_stages - 1))
        return out


class ResNet(StagedNet):
    """CIFAR ResNet: 3x3 stem, four stages of residual blocks, GAP + linear head."""

    def __init__(
        self,
        block: type[_ResidualBlock],
        num_blocks: Sequence[int],
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 10,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.layer0 = _conv_bn(3, widths[0], 3)
        c_in = widths[0]
        rates = iter(drop_path_rates(drop_path_rate, sum(num_blocks)))
        for i, (n, w) in enumerate(zip(num_blocks, widths)):
            seq = []
            for j in range(n):
                seq.append(block(c_in, w, stride=2 if (i > 0 and j == 0) else 1, drop_path_rate=next(rates)))
                c_in = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*seq))
        self.num_stages = len(num_blocks)
        self.classifier = nn.Sequential(GAPHead(c_in, num_classes))


def resnet(depth: int, num_classes: int = 10, widths: Sequence[int] = (64, 128, 256, 512),
           num_blocks: Sequence[int] | None = None, drop_path_rate: float = 0.0) -> ResNet:
    """ResNet-18 (basic blocks 2-2-2-2) or ResNet-50 (bottlenecks 3-4-6-3) for 32x32 inputs."""
    block, default = {18: (BasicBlock, (2, 2, 2, 2)), 50: (Bottleneck, (3, 4, 6, 3))}[depth]
    num_blocks = tuple(num_blocks or default)
    if len(num_blocks) != len(widths):
        raise ValueError(f"num_blocks={num_blocks} and widths={tuple(widths)} need one entry per stage each")
    return ResNet(block, num_blocks, widths, num_classes, drop_path_rate)
