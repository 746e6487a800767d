"""Loss landscapes against direct evaluation, norms of directions, and closed-form trajectories."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib.analysis.landscape import (
    Landscape,
    loss_landscape,
    random_direction,
    trajectory,
)

torch.set_num_threads(1)


class TinyViT(nn.Module):
    """Patch embedding (conv), class token, positional embedding, one attention block, head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, 8) * 0.1)
        self.pos_embed = nn.Parameter(torch.randn(1, 5, 8) * 0.1)
        self.norm = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1) + self.pos_embed
        h = self.norm(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        return self.head(t[:, 0])


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.stem(x)))
        h = h + torch.relu(self.conv(h))
        return self.fc(h.mean((2, 3)))


def data(n_batches: int = 2, n: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)) for _ in range(n_batches)]


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    m = TinyViT() if name == "vit" else TinyResNet()
    if name == "resnet":
        with torch.no_grad():
            m.bn.running_mean.uniform_(-0.3, 0.3)
            m.bn.running_var.uniform_(0.5, 2.0)
    return m.train()


def direct_loss(model: nn.Module, batches) -> tuple[float, float]:
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(m(x), y, reduction="sum") for x, y in batches]
        correct = [(m(x).argmax(1) == y).sum() for x, y in batches]
    n = sum(len(y) for _, y in batches)
    return float(sum(losses)) / n, float(sum(correct)) / n


def authors_direction(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Transcription of the official ops/loss_landscapes.py: ``normalize_filter`` (norms over dim 0,
    + 1e-7), then ``ignore_bn`` (1-D tensors -> 0) and ``ignore_kw(["pos_embed", "relative_position"])``
    (re.search on the name -> 0); drawn from the same Gaussian stream as the library (one randn per
    trainable tensor, in order)."""
    import re

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in model.named_parameters():
        d = torch.randn(w.shape, generator=g, dtype=torch.float64)
        w = w.detach().double()
        d = torch.norm(w, dim=0, keepdim=True) / (torch.norm(d, dim=0, keepdim=True) + 1e-7) * d
        if len(d.size()) < 2 or any(re.search(kw, name) for kw in ["pos_embed", "relative_position"]):
            d = torch.zeros_like(d)
        out[name] = d.float()
    return out


def test_direction_norms_official_by_default_and_filter() -> None:
    model = make("vit")
    d_off = random_direction(model, seed=1)  # the authors' normalisation is the default
    d_li = random_direction(model, seed=1, norm="filter")
    want = authors_direction(model, seed=1)
    assert torch.count_nonzero(d_off["cls_token"]) > 0  # the authors move the class token
    for name, w in model.named_parameters():
        torch.testing.assert_close(d_off[name], want[name], rtol=1e-6, atol=1e-8)
        if w.dim() < 2 or name == "pos_embed":
            assert torch.count_nonzero(d_li[name]) == 0
            continue
        dims = tuple(range(1, w.dim()))
        vn = torch.linalg.vector_norm
        torch.testing.assert_close(vn(d_li[name], dim=dims), vn(w.detach(), dim=dims), rtol=1e-5, atol=1e-7)
        if w.shape[0] > 1:
            assert not torch.allclose(d_li[name], d_off[name])
    d2 = random_direction(model, seed=2)
    assert not torch.allclose(d_off["head.weight"], d2["head.weight"])
    with pytest.raises(ValueError, match="filter"):
        random_direction(model, norm="layer")


def test_centre_is_soft_target_nll_plus_authors_l2_on_a_mixed_batch() -> None:
    """The landscape's loss at the centre (Park & Kim's losslandscape.ipynb): SoftTargetCrossEntropy
    on a mixed, label-smoothed batch + 0.05 * sum over parameters of their (unsquared) L2 norms."""
    model = make("resnet")
    x, y = data(1, 8)[0]
    lam = 0.6
    t = nn.functional.one_hot(y, 3).float() * 0.9 + 0.1 / 3
    xm, tm = lam * x + (1 - lam) * x.flip(0), lam * t + (1 - lam) * t.flip(0)
    ls = loss_landscape(model, [(xm, tm)], n_points=3, span=0.5, weight_decay=0.05, progress=False)
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        logits = m(xm)
        nll = float(-(tm * torch.log(torch.softmax(logits, 1))).sum(1).mean())
        l2 = float(sum(torch.norm(p) for p in m.parameters()))
        acc = float((logits.argmax(1) == tm.argmax(1)).float().mean())
    assert ls.nll[1, 1] == pytest.approx(nll, rel=1e-5)
    assert ls.loss[1, 1] == pytest.approx(nll + 0.05 * l2, rel=1e-5)
    assert ls.accuracy[1, 1] == pytest.approx(acc)
    assert ls.norm == "official" and ls.penalty == "authors"


@pytest.mark.parametrize("name", ["vit", "resnet"])
def test_grid_centre_vmap_equals_loop_and_direct(name: str) -> None:
    model = make(name)
    batches = data()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ls = loss_landscape(model, batches, n_points=5, span=0.5, weight_decay=0.05, chunk=7, backend="vmap", progress=False)
    assert ls.backend == "vmap"
    loop = loss_landscape(model, batches, n_points=5, span=0.5, weight_decay=0.05, backend="loop", progress=False)
    np.testing.assert_allclose(ls.nll, loop.nll, rtol=1e-5)
    np.testing.assert_array_equal(ls.accuracy, loop.accuracy)
    nll, acc = direct_loss(model, batches)
    assert ls.nll[2, 2] == pytest.approx(nll, rel=1e-5)
    assert ls.accuracy[2, 2] == pytest.approx(acc)
    l2 = sum(float(p.detach().norm()) for p in model.parameters())
    assert ls.loss[2, 2] == pytest.approx(nll + 0.05 * l2, rel=1e-5)
    assert np.ptp(ls.nll) > 1e-3  # the surface is not flat
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_grid_point_equals_moved_model() -> None:
    """An off-centre grid point equals the loss of a copy whose weights were moved by a d1 + b d2."""
    model = make("resnet")
    batches = data(1)
    ls = loss_landscape(model, batches, n_points=3, span=0.4, seed=5, progress=False)
    d1, d2 = random_direction(model, 5), random_direction(model, 6)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in moved.named_parameters():
            p += 0.4 * d1[n] - 0.4 * d2[n]  # a = +0.4 (column 2), b = -0.4 (row 0)
    assert ls.nll[0, 2] == pytest.approx(direct_loss(moved, batches)[0], rel=1e-5)


@pytest.mark.parametrize("backend", ["loop", "vmap"])
def test_bf16_grid_is_close_to_fp32_but_really_bf16(backend: str) -> None:
    """amp=True runs the forward passes in bf16 (the paper preset's fast GPU path): every grid
    NLL within 2% of float32's, and not bit-identical (the autocast took effect)."""
    model = make("vit")
    batches = data()
    fp32 = loss_landscape(model, batches, n_points=3, span=0.5, backend=backend, progress=False)
    bf16 = loss_landscape(model, batches, n_points=3, span=0.5, backend=backend, progress=False, amp=True)
    np.testing.assert_allclose(bf16.nll, fp32.nll, rtol=2e-2)
    assert np.abs(bf16.nll - fp32.nll).max() > 0
    np.testing.assert_array_equal(bf16.l2_norms, fp32.l2_norms)  # the L2 term stays in float32


def test_landscape_json_round_trip(tmp_path) -> None:
    ls = loss_landscape(make("resnet"), data(1), n_points=3, progress=False, name="r")
    ls.save(tmp_path / "l.json")
    back = Landscape.load(tmp_path / "l.json")
    np.testing.assert_array_equal(back.loss, ls.loss)
    assert back.model == "r" and back.n_points == 3


def test_trajectory_straight_line() -> None:
    model = make("resnet")
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    w_star = {k: v + 1.0 if v.is_floating_point() else v for k, v in w0.items()}
    ts = np.linspace(0.0, 0.9, 7)
    snaps = [{k: w0[k] + t * (w_star[k] - w0[k]) if w0[k].is_floating_point() else w0[k] for k in w0} for t in ts]
    tr = trajectory(snaps, w_star)
    np.testing.assert_allclose(tr.r, 1.0 - ts, atol=1e-6)
    np.testing.assert_allclose(tr.theta, 0.0, atol=1e-3)
    # a path that turns: w_t - w* orthogonal to w_0 - w* gives theta = pi/2
    u0 = {k: w0[k] - w_star[k] for k in tr.keys}
    flip = {k: w_star[k] + torch.flip(u0[k].reshape(-1), [0]).reshape(u0[k].shape) for k in tr.keys}
    cos = sum(float((u0[k] * (flip[k] - w_star[k])).sum()) for k in tr.keys)
    assert trajectory([w0, flip], w_star).theta[1] == pytest.approx(
        np.arccos(cos / sum(float((u0[k] ** 2).sum()) for k in tr.keys)), abs=1e-6
    )


def test_plot_landscape_carries_the_grid() -> None:
    from hdvit_lib.plots.landscape import plot_landscape

    ls = loss_landscape(make("resnet"), data(1), n_points=3, progress=False)
    fig = plot_landscape({"r": ls, "r2": ls}, z="nll")
    assert [t.type for t in fig.data] == ["surface", "contour"] * 2
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), ls.nll)
    with pytest.raises(ValueError, match="loss"):
        plot_landscape({"r": ls}, z="hessian")
