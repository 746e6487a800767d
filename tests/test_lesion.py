"""Tests for hdvit_lib.analysis.lesion: identity residuals and a hand-written lesioned forward."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib.analysis.lesion import LesionResult, lesion_study

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
    r = lesion_study(model, _labels(model, toy.toy_batches()), model_name="toy")
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
