"""The paper-size models through the analyses' numerical core (CPU, one image each).

The chapters run tiny models in CI; these check that the paper's own shapes (ResNet-50 23.7M,
ViT-Ti 5.4M with 256 tokens, AlterNet-50 33.0M parameters, 100 classes) go through the same code:
the Hessian-vector product against a central finite difference of gradients (an independent
reference; float64 so that the difference quotient is accurate), and the landscape's centre point
against a plain forward pass.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hdvit_lib.analysis.hessian import FlatParams, analysis_mode, hvp
from hdvit_lib.analysis.landscape import loss_landscape
from hdvit_lib.models import get_model

PAPER = ["resnet50", "vit_ti", "alternet50"]  # the models of the paper's Hessian figures (Fig. 4, 12c)


def batch(seed: int = 0, n: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g, dtype=dtype), torch.randint(0, 100, (n,), generator=g)


def flat_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def generic_batchnorm(model: nn.Module) -> None:
    """BatchNorm statistics and shifts as after training (not 0/1/0). At initialisation a
    bias-free conv after a ReLU whose inputs are all zero at a pixel gives exactly 0, and ReLU(0)
    is a kink: there the gradient jumps and no finite difference converges (found on this test's
    first run: 1480 of 214k ReLU inputs of a fresh tiny ResNet-50 were exactly 0 in eval mode)."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            with torch.no_grad():
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", PAPER)
def test_hvp_at_paper_size_matches_finite_differences(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name, num_classes=100).double()
    generic_batchnorm(model)
    x, y = batch()
    flat = FlatParams(model)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(flat.w.numel(), generator=g, dtype=torch.float64)
    v /= v.norm()
    hv = hvp(model, (x, y), v)
    eps = 1e-6
    with analysis_mode(model):
        params = [p for p in model.parameters() if p.requires_grad]
        w0 = [p.detach().clone() for p in params]
        grads = []
        for sign in (1.0, -1.0):
            offset = 0
            with torch.no_grad():
                for p, w in zip(params, w0, strict=True):
                    p.copy_(w + sign * eps * v[offset:offset + p.numel()].view_as(p))
                    offset += p.numel()
            grads.append(flat_grad(model, x, y))
        with torch.no_grad():
            for p, w in zip(params, w0, strict=True):
                p.copy_(w)
    fd = (grads[0] - grads[1]) / (2 * eps)
    assert sum(p.numel() for p in params) > 5_000_000
    assert float(hv.norm()) > 0
    assert float((hv - fd).norm() / fd.norm()) < 1e-4, name


@pytest.mark.timeout(300)
def test_landscape_centre_at_paper_size() -> None:
    torch.manual_seed(0)
    model = get_model("vit_ti", num_classes=100)
    x, y = batch(dtype=torch.float32)
    land = loss_landscape(model, [(x, y)], n_points=3, span=0.5, progress=False)
    model.eval()
    with torch.no_grad():
        direct = float(nn.functional.cross_entropy(model(x), y))
    assert land.nll[1, 1] == pytest.approx(direct, rel=1e-5)
    assert land.nll.max() > land.nll[1, 1] or land.nll.min() < land.nll[1, 1]  # the grid moved the weights
