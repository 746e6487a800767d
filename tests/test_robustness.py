"""Tests for hdvit_lib.analysis.robustness: an independent numpy transcription of the authors'
FreqAttack filter, the noise power per band (closed form), the equal-power option's spectrum and
magnitude, and the accuracy change of models whose frequency response is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib.analysis.robustness import (
    RobustnessResult,
    band_noise,
    freq_filter,
    frequency_robustness,
)

torch.set_num_threads(1)


def _maxnorm_freq(h: int, w: int) -> np.ndarray:
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return 2 * np.pi * np.maximum(np.abs(fy), np.abs(fx))


def _freq_attack_numpy(delta: np.ndarray, f: float, s: float) -> np.ndarray:
    """FreqAttack._fourier_mask (ops/adversarial.py, xxxnell/how-do-vits-work) step by step in
    numpy, real part: FFT, roll by H/2, amplitude times (centred square f + s minus centred
    square f - s, sides int(. H / 2 pi) * 2 clamped to [0, H], padded centrally), phase kept,
    roll by H/2 again, inverse FFT."""
    h = delta.shape[-1]
    x = np.roll(np.fft.fft2(delta), (h // 2, h // 2), axis=(-2, -1))
    amp, ang = np.abs(x), np.angle(x)

    def centre(side: int) -> np.ndarray:
        side = min(max(side, 0), h)
        return np.pad(np.ones((side, side)), (h - side) // 2)

    mask = centre(int((f + s) * h / (2 * np.pi)) * 2) - centre(int((f - s) * h / (2 * np.pi)) * 2)
    x = amp * mask * np.exp(1j * ang)
    x = np.roll(x, (h // 2, h // 2), axis=(-2, -1))
    return np.fft.ifft2(x).real, mask


@pytest.mark.parametrize("f, s", [(0.1 * np.pi, 0.05 * np.pi), (0.5 * np.pi, 0.05 * np.pi), (0.9 * np.pi, 0.05 * np.pi),
                                  (0.3 * np.pi, 0.2), (0.35, 0.2), (np.pi, 0.2)])
@pytest.mark.parametrize("size", [16, 32])
def test_freq_filter_is_the_authors_freq_attack(f, s, size):
    g = torch.Generator().manual_seed(size)
    delta = 0.5 * torch.randn(4, 3, size, size, generator=g, dtype=torch.float64).sign()  # Random(eps)
    want, _ = _freq_attack_numpy(delta.numpy(), f, s)
    np.testing.assert_allclose(freq_filter(delta, f, s).numpy(), want, atol=1e-12)


def test_band_noise_is_filtered_sign_noise():
    f, bw, eps = 0.5 * np.pi, 0.1 * np.pi, 0.3
    n = band_noise((2, 3, 32, 32), f, bw, eps, seed=7)  # construction="authors" is the default
    g = torch.Generator().manual_seed(7)
    delta = eps * torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64).sign()
    np.testing.assert_allclose(n.numpy(), _freq_attack_numpy(delta.numpy(), f, bw / 2)[0], atol=1e-6)
    assert not np.allclose(n.numpy(), band_noise((2, 3, 32, 32), f, bw, eps, seed=8).numpy())


def test_authors_noise_power_grows_with_the_band_area():
    # E mean(n^2) = eps^2 mean_k ((M(k) + M(-k)) / 2)^2 for +-eps sign noise (E|FFT|^2 = eps^2 HW at
    # every k; taking the real part averages the mask with its mirror image). At 32x32 the 0.1 pi
    # band's annulus is the 4x4 square (16 bins, 12.5 after mirroring), the 0.9 pi one 30^2 - 26^2 =
    # 224 bins (223 after mirroring): power ratio 13.5 (the plain area ratio is 14).
    size, eps = 32, 0.5

    def expected_power(f: float) -> float:
        m = _freq_attack_numpy(np.zeros((size, size)), f * np.pi, 0.05 * np.pi)[1]
        m = np.roll(m, (-(size // 2), -(size // 2)), axis=(0, 1))  # frequency 0 at index 0
        mirror = np.roll(m[::-1, ::-1], (1, 1), axis=(0, 1))  # M(-k)
        return eps**2 * float((((m + mirror) / 2) ** 2).mean())

    assert _freq_attack_numpy(np.zeros((size, size)), 0.1 * np.pi, 0.05 * np.pi)[1].sum() == 16
    assert _freq_attack_numpy(np.zeros((size, size)), 0.9 * np.pi, 0.05 * np.pi)[1].sum() == 224
    power = {f: float(band_noise((256, 3, size, size), f * np.pi, 0.1 * np.pi, eps, seed=3).double().pow(2).mean())
             for f in (0.1, 0.9)}
    for f in (0.1, 0.9):  # sampling error: ~2% (0.1 pi band, ~12 bins x 768 maps), ~0.5% (0.9 pi)
        assert power[f] == pytest.approx(expected_power(f), rel=0.08)
    ratio = power[0.9] / power[0.1]
    assert ratio == pytest.approx(expected_power(0.9) / expected_power(0.1), rel=0.08)
    assert 12 < ratio < 15


@pytest.mark.parametrize("f", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_equal_power_noise_lies_in_the_band_and_has_the_magnitude(f):
    n = band_noise((4, 3, 32, 32), f * np.pi, magnitude=0.2, seed=1, construction="equal_power")
    n = n.numpy().astype(np.float64)
    power = np.abs(np.fft.fft2(n)) ** 2
    k = _maxnorm_freq(32, 32)
    inside = (k >= (f - 0.05) * np.pi - 1e-9) & (k < (f + 0.05) * np.pi - 1e-9)
    assert power[..., inside].sum() / power.sum() > 0.99
    assert power[..., inside].sum() / power.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(np.sqrt((n**2).mean((-2, -1))), 0.2, rtol=1e-5)  # the same RMS in every band
    other = band_noise((4, 3, 32, 32), f * np.pi, magnitude=0.2, seed=2, construction="equal_power").numpy()
    assert not np.allclose(n, other)  # the seed draws new phases


@pytest.mark.parametrize("construction", ["authors", "equal_power"])
def test_empty_band_is_refused(construction):
    with pytest.raises(ValueError, match="multiples of 0.250 pi"):
        band_noise((1, 8, 8), 0.1 * np.pi, bandwidth=0.05 * np.pi, construction=construction)
    with pytest.raises(ValueError, match="construction"):
        band_noise((1, 8, 8), 0.5 * np.pi, construction="pink")


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
    assert back.construction == "authors" and back.noise_rms.shape == (2,)
    assert r.noise_rms[1] > r.noise_rms[0] > 0  # the authors' noise grows with the band's area


def test_equal_power_option_is_recorded_and_has_the_rms():
    model = _BlurNet()
    r = frequency_robustness(model, _data(model), f_centers=[0.125, 0.875], bandwidth=0.125, magnitude=3.0,
                             construction="equal_power")
    assert r.construction == "equal_power"
    np.testing.assert_allclose(r.noise_rms, 3.0, rtol=1e-5)
    assert r.delta_accuracy[0] < -0.2 and r.delta_accuracy[1] == 0.0


def test_plot_robustness_shows_every_model_in_percent():
    from hdvit_lib.plots.representation import plot_robustness

    model = _BlurNet()
    r = frequency_robustness(model, _data(model), f_centers=[0.125, 0.875], bandwidth=0.125, magnitude=3.0)
    fig = plot_robustness({"blur": r, "again": r})
    assert all(t.visible for t in fig.data)
    np.testing.assert_allclose(fig.data[0].y, 100 * r.delta_accuracy)
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["all", "blur", "again"]


def test_authors_noise_rms_closed_form_matches_the_drawn_noise():
    from hdvit_lib.analysis.robustness import authors_noise_rms

    for f in (0.1, 0.5, 0.9):
        drawn = float(band_noise((128, 3, 32, 32), f * np.pi, 0.1 * np.pi, 2.0, seed=4).double().pow(2).mean().sqrt())
        assert drawn == pytest.approx(authors_noise_rms((32, 32), f * np.pi, 0.1 * np.pi, 2.0), rel=0.05)
