"""Tests for hdvit_lib.analysis.lesion: identity residuals, hand-written lesioned forwards (a whole
MSA block; a ResNet / AlterNet block without its 3x3 conv, the paper's mode)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib.analysis.lesion import LesionResult, lesion_study
from hdvit_lib.models import get_model, run_blocks

_spec = importlib.util.spec_from_file_location("_toy", Path(__file__).with_name("test_features.py"))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


def _labels(model: nn.Module, batches, flip: int = 3):
    """Labels = the intact model's predictions, a few changed (so the loss and accuracy both move)."""
    model.eval()
    out = []
    with torch.no_grad():
        for x, _ in batches:
            y = model(x).argmax(-1)
            y[:flip] = (y[:flip] + 1) % 5
            out.append((x, y))
    return out


def test_identity_residual_lesions_to_no_change():
    torch.manual_seed(0)
    model = toy.ToyNet()
    with torch.no_grad():
        model.conv[0].weight.zero_()
        model.conv[0].bias.zero_()
        model.conv[1].bias.zero_()  # BN(0) = 0 (running mean 0), ReLU(0) = 0: branch is zero
    r = lesion_study(model, _labels(model, toy.toy_batches()), model_name="toy", mode="branch")
    assert r.index == [1, 2, 3, 4] and r.kinds == ["conv", "conv", "msa", "mlp"]
    assert r.delta_accuracy[0] == 0.0 and r.delta_loss[0] == pytest.approx(0.0, abs=1e-6)
    assert r.clean_accuracy == pytest.approx(3 / 12)  # 3 of 4 labels per batch flipped
    assert np.abs(r.delta_loss[1:]).max() > 1e-3  # the others do change the model


def test_matches_a_hand_written_lesioned_forward():
    torch.manual_seed(0)
    model = toy.ToyNet().eval()
    batches = _labels(model, toy.toy_batches())
    r = lesion_study(model, batches)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    with torch.no_grad():
        e = model.embed(x)
        c1 = e + model.conv(e)
        c2 = nn.functional.avg_pool2d(c1, 2) + model.down(c1)
        t = torch.cat([model.cls.expand(len(x), -1, -1), c2.flatten(2).transpose(1, 2)], 1)  # MSA removed
        t = t + model.mlp(model.norm2(t))
        logits = model.head(t[:, 1:].mean(1))
    j = r.index.index(3)
    assert r.accuracy[j] == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
    assert r.loss[j] == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    back = LesionResult.from_json(r.to_json())
    np.testing.assert_allclose(back.loss, r.loss)


def test_model_without_residual_blocks_is_refused():
    from hdvit_lib.models.blocks import Block

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def blocks(self):
            return [Block("fc", "head", self.fc, layout="vector")]

    with pytest.raises(ValueError, match="no residual"):
        lesion_study(Plain(), [(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))])


def test_plot_lesion():
    from hdvit_lib.plots.representation import plot_lesion

    torch.manual_seed(0)
    model = toy.ToyNet().eval()
    r = lesion_study(model, _labels(model, toy.toy_batches()))
    fig = plot_lesion({"a": r, "b": r})
    np.testing.assert_allclose(fig.data[0].y, 100 * r.delta_accuracy)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["a", "b"]


def _generic_bn(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (eval mode)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(c, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(c, generator=g))
    return model.eval()


def _forward_with(model: nn.Module, x: torch.Tensor, target: nn.Module, replace) -> torch.Tensor:
    """The model's forward, stage by stage, with block ``target`` computed by ``replace(block, h)``."""
    h = model.layer0(x)
    for stage in model.stages():
        for blk in stage:
            h = replace(blk, h) if blk is target else blk(h)
    return model.classifier(h)


def _zoo(name: str, n: int = 2) -> tuple[nn.Module, torch.Tensor, list]:
    """A tiny zoo model with generic BatchNorm (eval mode), an input batch, its blocks."""
    model = _generic_bn(get_model(name))
    return model, torch.randn(n, 3, 32, 32), model.blocks()


def test_resnet50_paper_lesion_replaces_the_3x3_conv_by_identity():
    model, x, blocks = _zoo("resnet50_tiny", 3)
    with torch.no_grad():
        for i, b in enumerate(blocks):
            if b.kind != "conv":
                continue
            blk = b.module
            if blk.conv2[0].stride != (1, 1):  # strided 3x3: shapes change, no paper lesion
                assert b.lesion is None
                with pytest.raises(ValueError, match="cannot be lesioned"):
                    run_blocks(blocks, x, lesion=i, mode="paper")
                continue
            ref = _forward_with(model, x, blk, lambda m, h: torch.relu(m.conv3(m.conv1(h)) + m.shortcut(h)))
            torch.testing.assert_close(run_blocks(blocks, x, lesion=i, mode="paper")[0], ref)
            branch = _forward_with(model, x, blk, lambda m, h: torch.relu(m.shortcut(h)))
            torch.testing.assert_close(run_blocks(blocks, x, lesion=i, mode="branch")[0], branch)
    batches = [(x, model(x).argmax(-1))]
    r = lesion_study(model, batches)
    strided = {i for i, b in enumerate(blocks) if b.kind == "conv" and b.module.conv2[0].stride != (1, 1)}
    assert r.mode == "paper" and len(strided) == 3
    assert r.index == [i for i, b in enumerate(blocks) if b.kind == "conv" and i not in strided]
    assert lesion_study(model, batches, mode="branch").index == [i for i, b in enumerate(blocks) if b.kind == "conv"]


def test_resnet18_paper_lesion_removes_the_second_3x3_conv():
    model, x, blocks = _zoo("resnet18_tiny")
    convs = [i for i, b in enumerate(blocks) if b.kind == "conv"]
    assert all(blocks[i].lesion is not None for i in convs)  # conv2 keeps the shape in every block
    with torch.no_grad():
        for i in convs:
            blk = blocks[i].module
            ref = _forward_with(model, x, blk, lambda m, h: torch.relu(m.conv1(h) + m.shortcut(h)))
            torch.testing.assert_close(run_blocks(blocks, x, lesion=i, mode="paper")[0], ref)


def test_alternet_paper_lesion_drops_the_preactivated_3x3_unit():
    model, x, blocks = _zoo("alternet50_tiny")
    with torch.no_grad():
        for i, b in enumerate(blocks):
            blk = b.module
            if b.kind == "conv" and blk.conv2[2].stride == (1, 1):
                def lesioned(m, h):
                    a = torch.relu(m.bn(h))
                    return m.conv3(m.conv1(a)) + (m.shortcut(a) if len(m.shortcut) else h)
                ref = _forward_with(model, x, blk, lesioned)
            elif b.kind == "msa":  # the whole MSA block: shortcut only
                def lesioned(m, h):
                    return m.shortcut(nn.functional.gelu(m.norm1(h))) if len(m.shortcut) else h
                ref = _forward_with(model, x, blk, lesioned)
            else:
                assert b.lesion is None
                continue
            torch.testing.assert_close(run_blocks(blocks, x, lesion=i, mode="paper")[0], ref)


def test_vit_msa_paper_lesion_is_the_branch_removal():
    model = get_model("vit_ti_tiny").eval()
    x = torch.randn(2, 3, 32, 32)
    blocks = model.blocks()
    with torch.no_grad():
        for i, b in enumerate(blocks):
            if b.kind in ("msa", "mlp"):
                skipped = run_blocks(blocks[:i] + blocks[i + 1:], x)[0]  # x + branch(x) -> x
                torch.testing.assert_close(run_blocks(blocks, x, lesion=i, mode="paper")[0], skipped)
                torch.testing.assert_close(run_blocks(blocks, x, lesion=i, mode="branch")[0], skipped)
