"""Tests for hdvit_lib.analysis.features, plus ``ToyNet``: a tiny model with every block kind and
layout that the other representation tests (variance, Fourier, lesion, CKA, ...) load by path."""

from __future__ import annotations

import torch
from torch import nn

from hdvit_lib.analysis import features as F
from hdvit_lib.models.blocks import Block, run_blocks

torch.set_num_threads(1)


class _Res(nn.Module):
    def __init__(self, branch: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.branch(x)


class _MapToTokens(nn.Module):
    """(B, C, H, W) map -> (B, 1 + HW, C) tokens with a class token (the shortcut of the MSA block)."""

    def __init__(self, cls: nn.Parameter) -> None:
        super().__init__()
        self.cls = cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)


class _Attn(nn.Module):
    def __init__(self, to_tokens: nn.Module, norm: nn.Module, attn: nn.MultiheadAttention) -> None:
        super().__init__()
        self.to_tokens, self.norm, self.attn = to_tokens, norm, attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_tokens(x)
        h = self.norm(x)
        return x + self.attn(h, h, h, need_weights=False)[0]

    def shortcut(self) -> nn.Module:
        return self.to_tokens


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1:].mean(1)


class ToyNet(nn.Module):
    """embed (stride 2) -> residual conv -> residual strided conv (avg-pool shortcut) -> MSA on
    tokens with a class token -> MLP on tokens -> mean pool -> linear head. 16x16 inputs give
    8x8 then 4x4 maps."""

    def __init__(self, num_classes: int = 5, dim: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim))
        self.conv = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(dim, dim, 3, stride=2, padding=1), nn.ReLU())
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, num_classes)

    def blocks(self) -> list[Block]:
        to_tokens = _MapToTokens(self.cls)
        return [
            Block("embed", "embed", self.embed),
            Block("conv1", "conv", _Res(self.conv, nn.Identity()), shortcut=nn.Identity()),
            Block("conv2", "conv", _Res(self.down, nn.AvgPool2d(2)), shortcut=nn.AvgPool2d(2), stage=1),
            Block("msa", "msa", _Attn(to_tokens, self.norm1, self.attn), shortcut=to_tokens,
                  layout="tokens", prefix_tokens=1, stage=1),
            Block("mlp", "mlp", _Res(nn.Sequential(self.norm2, self.mlp), nn.Identity()),
                  shortcut=nn.Identity(), layout="tokens", prefix_tokens=1, stage=1),
            Block("pool", "pool", _Pool(), layout="vector", stage=1),
            Block("head", "head", self.head, layout="vector", stage=1),
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_blocks(self.blocks(), x)[0]


def toy_batches(n_batches: int = 3, batch: int = 4, size: int = 16, seed: int = 0, classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, size, size, generator=g), torch.randint(0, classes, (batch,), generator=g))
            for _ in range(n_batches)]


def _reference_outputs(model: ToyNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Every block output computed by hand, without the library's layout code."""
    model.eval()
    with torch.no_grad():
        e = model.embed(x)
        c1 = e + model.conv(e)
        c2 = torch.nn.functional.avg_pool2d(c1, 2) + model.down(c1)
        b, d, h, w = c2.shape
        t = torch.cat([model.cls.expand(b, -1, -1), c2.flatten(2).transpose(1, 2)], 1)
        n = model.norm1(t)
        t = t + model.attn(n, n, n)[0]
        t2 = t + model.mlp(model.norm2(t))
        pooled = t2[:, 1:].mean(1)
        grid = lambda z: z[:, 1:].reshape(b, h, w, d).permute(0, 3, 1, 2)
        return [e, c1, c2, grid(t), grid(t2), pooled, model.head(pooled)]


def test_outputs_match_a_hand_written_forward_and_metadata():
    torch.manual_seed(0)
    model = ToyNet()
    batches = toy_batches()
    feats = F.extract_features(model, batches, n_images=10, use_cache=False)
    x = torch.cat([b[0] for b in batches])[:10]
    ref = _reference_outputs(model, x)
    assert feats.n_images == 10 and len(feats) == 7
    for got, want in zip(feats.outputs, ref):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert feats.kinds == ["embed", "conv", "conv", "msa", "mlp", "pool", "head"]
    assert list(feats.depth) == [i / 5 for i in range(7)]  # logits dropped: pool (last before head) at 1
    assert feats.subsamples == [False, False, True, False, False, True, False]
    assert torch.equal(feats.targets, torch.cat([b[1] for b in batches])[:10])


def test_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = ToyNet(dropout=0.5)
    x = toy_batches(1, batch=6)[0][0]
    model.train()
    feats = F.extract_features(model, x, use_cache=False)
    assert model.training and model.embed[1].training and model.mlp[2].training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(feats.outputs[-1], model(x))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(feats.outputs[-1], model(x))  # train mode differs: the check has teeth


def test_cache_memory_and_disk(tmp_path):
    torch.manual_seed(0)
    F.clear_cache()
    model = ToyNet()
    batches = toy_batches()
    a = F.extract_features(model, batches)
    assert F.extract_features(model, batches) is a
    with torch.no_grad():
        model.head.bias += 1.0
    b = F.extract_features(model, batches)
    assert b is not a and b.key != a.key
    torch.testing.assert_close(b.outputs[-1], a.outputs[-1] + 1.0)
    other = toy_batches(seed=1)
    assert F.extract_features(model, other).key.split("-")[1] != b.key.split("-")[1]
    c = F.extract_features(model, batches, cache_dir=tmp_path, use_cache=False)
    assert len(list(tmp_path.glob("features-*.pt"))) == 1
    d = F.extract_features(model, batches, cache_dir=tmp_path, use_cache=False)
    assert d is not c and d.key == c.key and d.names == c.names and d.subsamples == c.subsamples
    for u, v in zip(c.outputs, d.outputs):
        assert torch.equal(u, v)
    F.clear_cache()


def test_model_without_blocks_is_refused():
    import pytest

    with pytest.raises(TypeError, match="blocks"):
        F.extract_features(nn.Linear(2, 2), torch.zeros(1, 2))


def test_zoo_models_final_output_matches_forward():
    from hdvit_lib.models import get_model

    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in ("resnet18_tiny", "vit_ti_tiny", "pit_ti_tiny"):
        torch.manual_seed(0)
        model = get_model(name)
        feats = F.extract_features(model, x, use_cache=False)
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(feats.outputs[-1], model(x), atol=1e-4, rtol=1e-4)
        assert feats.kinds[0] == "embed" and feats.kinds[-1] == "head"
        assert all(o.shape[0] == 4 for o in feats.outputs)
