"""hdvit_lib.modes: eval mode inside, every module's own mode restored after (mixed modes too)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hdvit_lib.modes import eval_mode, model_device


def test_eval_mode_restores_mixed_modes_even_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.BatchNorm1d(2))
    model.train()
    model[2].eval()  # a frozen BatchNorm inside a training model
    before = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        x = torch.ones(4, 2)
        assert torch.equal(model(x), model(x))  # dropout off: deterministic
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before


def test_model_device() -> None:
    assert model_device(nn.Linear(1, 1)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters
