"""Tests for hdvit_lib.analysis.robustness: the noise's spectrum (numpy), its magnitude, and the
accuracy change of models whose frequency response is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib.analysis.robustness import (
    RobustnessResult,
    band_noise,
    frequency_robustness,
)

torch.set_num_threads(1)


def _maxnorm_freq(h: int, w: int) -> np.ndarray:
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return 2 * np.pi * np.maximum(np.abs(fy), np.abs(fx))


@pytest.mark.parametrize("f", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_noise_energy_lies_in_the_band_and_has_the_magnitude(f):
    n = band_noise((4, 3, 32, 32), f * np.pi, magnitude=0.2, seed=1).numpy().astype(np.float64)
    power = np.abs(np.fft.fft2(n)) ** 2
    k = _maxnorm_freq(32, 32)
    inside = (k >= (f - 0.05) * np.pi - 1e-9) & (k < (f + 0.05) * np.pi - 1e-9)
    assert power[..., inside].sum() / power.sum() > 0.99
    assert power[..., inside].sum() / power.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(np.sqrt((n**2).mean((-2, -1))), 0.2, rtol=1e-5)
    other = band_noise((4, 3, 32, 32), f * np.pi, magnitude=0.2, seed=2).numpy()
    assert not np.allclose(n, other)  # the seed draws new phases


def test_empty_band_is_refused():
    with pytest.raises(ValueError, match="multiples of 0.250 pi"):
        band_noise((1, 8, 8), 0.1 * np.pi, bandwidth=0.05 * np.pi)


class _BlurNet(nn.Module):
    """A 5-tap binomial blur applied twice (response cos(w/2)^8 per axis, ~1e-6 at 7/8 pi), then a
    linear classifier."""

    def __init__(self, size: int = 16, classes: int = 4) -> None:
        super().__init__()
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 256).expand(3, 1, 5, 5).clone())
        self.fc = nn.Linear(3 * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = nn.functional.conv2d(nn.functional.pad(x, (2,) * 4, mode="circular"), self.kernel, groups=3)
        return self.fc(x.flatten(1))


def _data(model: nn.Module, n: int = 64, size: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    with torch.no_grad():
        y = model(x).argmax(-1)  # labels = clean predictions: clean accuracy 1
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, n, 16)]


def test_zero_magnitude_changes_nothing():
    torch.manual_seed(0)
    model = _BlurNet(size=32)
    r = frequency_robustness(model, _data(model, size=32), magnitude=0.0)  # the default bands
    assert r.clean_accuracy == 1.0 and r.n_images == 64
    assert (r.delta_accuracy == 0).all()
    np.testing.assert_allclose(r.loss, r.clean_loss, rtol=1e-6)


def test_a_low_pass_model_ignores_high_frequency_noise_only():
    torch.manual_seed(0)
    model = _BlurNet()
    r = frequency_robustness(model, _data(model), f_centers=[0.125, 0.875], bandwidth=0.125, magnitude=3.0)
    assert r.delta_accuracy[0] < -0.2  # low-frequency noise passes the blur
    assert r.delta_accuracy[1] == 0.0  # high-frequency noise is filtered out
    back = RobustnessResult.from_json(r.to_json())
    np.testing.assert_allclose(back.delta_accuracy, r.delta_accuracy)


def test_plot_robustness_shows_every_model_in_percent():
    from hdvit_lib.plots.representation import plot_robustness

    model = _BlurNet()
    r = frequency_robustness(model, _data(model), f_centers=[0.125, 0.875], bandwidth=0.125, magnitude=3.0)
    fig = plot_robustness({"blur": r, "again": r})
    assert all(t.visible for t in fig.data)
    np.testing.assert_allclose(fig.data[0].y, 100 * r.delta_accuracy)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["all", "blur", "again"]
