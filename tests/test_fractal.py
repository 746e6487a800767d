"""The fractal data set (FractalDB-style IFS categories): determinism, balance, natural-image
spectrum, class evidence that a tiny CNN learns, the IFS rendering against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib.data import fractal, get_dataset, spectrum_slope

torch.set_num_threads(1)


def test_deterministic_balanced_and_split_apart() -> None:
    x, y = fractal.generate(300, seed=0, num_classes=30)
    x2, y2 = fractal.generate(300, seed=0, num_classes=30)
    assert x.dtype == np.uint8 and x.shape == (300, 3, 32, 32)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert np.bincount(y, minlength=30).tolist() == [10] * 30
    xt, _ = fractal.generate(300, seed=0, split="test", num_classes=30)
    assert not np.array_equal(x, xt)
    with pytest.raises(ValueError, match="train, test"):
        fractal.generate(10, split="val")


def test_classes_are_contractive_ifs_with_accepted_filling_rate() -> None:
    a, b, p = fractal._class_systems(20)
    assert np.all(np.linalg.norm(a, ord=2, axis=(-2, -1)) <= 0.9 + 1e-9)  # the chaos game stays bounded
    assert np.allclose(p.sum(1), 1) and np.all((p > 0).sum(1) >= 2)
    # prototype filling rate, recomputed with the same rendering, inside the accepted range
    rng = np.random.default_rng(0)
    fill = (fractal._render(fractal._chaos_game(a, b, p, rng, fractal.N_POINTS)) > 0).mean((1, 2))
    assert np.all(fill >= fractal.FILL[0] * 0.8) and np.all(fill <= fractal.FILL[1] * 1.2)


def test_chaos_game_follows_the_maps() -> None:
    """Consecutive points satisfy x_{t+1} = A_j x_t + b_j for one of the maps (checked directly)."""
    a, b, p = fractal._class_systems(3)
    pts = fractal._chaos_game(a, b, p, np.random.default_rng(1), 50).astype(np.float64)
    for c in range(3):
        nxt = np.einsum("jik,tk->tji", a[c], pts[c, :-1]) + b[c][None]  # (t, map, 2)
        err = np.abs(nxt - pts[c, 1:, None]).max(-1)
        assert np.all(err[:, p[c] > 0].min(1) < 1e-4)


def test_natural_image_spectrum_and_dataset_api() -> None:
    ds = get_dataset("fractal", "train", n=1000, seed=0)
    assert ds.num_classes == 100 and len(ds) == 1000
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1 and 0 <= y < 100
    slope = spectrum_slope(ds.data.numpy().astype(np.float32) / 255)
    assert -2.6 < slope < -1.4  # natural images: about -2


def test_a_tiny_cnn_learns_the_categories_well_above_chance() -> None:
    torch.manual_seed(0)
    x, y = fractal.generate(2500, seed=0, num_classes=10)
    xt, yt = fractal.generate(400, seed=0, split="test", num_classes=10)
    X, Y = torch.tensor(x).float() / 255 - 0.5, torch.tensor(y)
    XT, YT = torch.tensor(xt).float() / 255 - 0.5, torch.tensor(yt)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(6):
        for i in torch.randperm(len(X)).split(64):
            loss = nn.functional.cross_entropy(net(X[i]), Y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = float((net(XT).argmax(1) == YT).float().mean())
    assert acc > 0.3, acc  # chance is 0.1; colour carries no class evidence, shape does


def test_mean_std_constants() -> None:
    from hdvit_lib.data.transforms import MEAN_STD

    x = get_dataset("fractal", "train", n=3000).data.float() / 255
    mean, std = MEAN_STD["fractal"]
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.tensor(mean), atol=0.005, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.tensor(std), atol=0.005, rtol=0)
