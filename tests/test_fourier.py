"""Tests for hdvit_lib.analysis.fourier: plane waves, constants, low-pass filtering, and an
independent numpy transcription of the official notebook's definition."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from hdvit_lib.analysis.features import extract_features
from hdvit_lib.analysis.fourier import (
    FourierResult,
    fourier_analysis,
    frequencies,
    relative_log_amplitude,
)

_spec = importlib.util.spec_from_file_location("_toy", Path(__file__).with_name("test_features.py"))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


def _official_numpy(x: np.ndarray) -> np.ndarray:
    """The official notebook's steps in numpy: log(|fft2| + 1e-6), roll by H/2, mean over (B, C),
    diagonal from the centre towards the positive corner, minus its first value."""
    a = np.log(np.abs(np.fft.fft2(x.astype(np.float64))) + 1e-6)
    h = x.shape[-1]
    a = np.roll(a, (h // 2, h // 2), axis=(2, 3)).mean((0, 1))
    d = np.diagonal(a)[h // 2 :]
    return d - d[0]


def _plane_wave(size: int, k: int, phase: float = 0.3) -> torch.Tensor:
    h = torch.arange(size, dtype=torch.float64)
    return torch.cos(2 * np.pi * k * (h[:, None] + h[None, :]) / size + phase)[None, None].float()


@pytest.mark.parametrize("size", [8, 9, 16, 32])
def test_default_is_the_official_computation(size):
    x = torch.randn(3, 4, size, size, generator=torch.Generator().manual_seed(size))
    official = _official_numpy(x.numpy())
    ours = relative_log_amplitude(x)
    np.testing.assert_allclose(ours, official, atol=1e-5)
    assert len(ours) == size - size // 2 and ours[0] == 0.0
    np.testing.assert_allclose(frequencies(size), 2 * np.arange(size - size // 2) / size)
    if size % 2 == 0:
        assert frequencies(size)[-1] == pytest.approx(1 - 2 / size)  # plotted at "1.0 pi" officially
    nyq = relative_log_amplitude(x, include_nyquist=True)  # towards the negative corner: same amplitudes
    n = min(len(nyq), len(official))
    np.testing.assert_allclose(nyq[:n], official[:n], atol=1e-5)
    assert len(nyq) == size // 2 + 1
    np.testing.assert_allclose(frequencies(size, include_nyquist=True), 2 * np.arange(size // 2 + 1) / size)


def test_nyquist_bin_of_white_noise_is_biased_low_and_the_default_is_not():
    # The Nyquist bin (pi, pi) of a real map is real-valued, the other diagonal bins are complex:
    # E log|N(0, v)| - E log|complex normal of variance v| = -log(2) / 2 = -0.347. (Frequency 0
    # is real too, so the flat level of the relative curve is +0.35; compare with bin 1.)
    size = 32
    x = torch.randn(128, 16, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    default = relative_log_amplitude(x)
    nyq = relative_log_amplitude(x, include_nyquist=True)
    level = default[1:].mean()  # sampling error per bin ~0.02 (complex) / 0.03 (real bins)
    assert np.abs(default[1:] - level).max() < 0.1  # the official samples end at pi (1 - 2/H): no drop
    np.testing.assert_allclose(nyq[:-1], default[: len(nyq) - 1])
    assert abs(nyq[-1] - level - (-np.log(2) / 2)) < 0.1  # about -0.35


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_diagonal_plane_wave_peaks_at_its_frequency(k):
    size = 16
    curve = relative_log_amplitude(_plane_wave(size, k).repeat(2, 3, 1, 1), include_nyquist=True)
    freqs = frequencies(size, include_nyquist=True)
    assert freqs[int(np.argmax(curve))] == pytest.approx(2 * k / size)  # k = 8 is the Nyquist pi
    others = np.delete(curve, [0, k])
    assert curve[k] - others.max() > 10  # the amplitude is ~1e-6 elsewhere (log ~ -14)


def test_constant_map_has_amplitude_only_at_zero():
    c, size = 2.5, 8
    curve = relative_log_amplitude(torch.full((2, 3, size, size), c))
    want = np.log(1e-6) - np.log(c * size * size + 1e-6)  # |F(0)| = c * H * W, |F(k != 0)| = 0
    np.testing.assert_allclose(curve[1:], want, atol=1e-3)
    assert curve[0] == 0.0


def test_low_pass_filter_lowers_the_high_frequencies():
    x = torch.randn(4, 8, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64)
    kernel = (kernel[:, None] * kernel[None, :] / 256).expand(8, 1, 5, 5)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2,) * 4, mode="circular"), kernel, groups=8)
    a, b = relative_log_amplitude(x), relative_log_amplitude(blurred)
    assert abs(a[-1] - a[1]) < 0.5  # white noise: flat spectrum (bin 0 is real: a[1:] ~ +0.35)
    assert b[-1] < a[-1] - 5  # the binomial filter's response vanishes at pi
    # closed form: along the diagonal the 5-tap binomial filter multiplies |F| by cos(w/2)^8
    # (checked up to 5/8 pi; beyond, |F| nears the 1e-6 added before the log)
    w = np.pi * frequencies(16)[:6]
    np.testing.assert_allclose((b - a)[:6], 8 * np.log(np.cos(w / 2)), atol=1e-4)


def test_fourier_analysis_on_toynet():
    torch.manual_seed(0)
    feats = extract_features(toy.ToyNet(), toy.toy_batches(), use_cache=False)
    r = fourier_analysis(feats, model_name="toy")
    assert r.kinds == ["embed", "conv", "conv", "msa", "mlp"]  # vector outputs skipped
    # official normalisation: logits (the head) dropped, depth i / (L - 1) over the 6 blocks before it
    np.testing.assert_allclose(r.depth, np.arange(5) / 5)
    assert r.include_nyquist is False
    for i in range(5):
        np.testing.assert_allclose(r.curves[i], relative_log_amplitude(feats.outputs[i]))
        assert r.high_frequency[i] == r.curves[i][-1]
    assert len(r.curves[0]) == 4 and len(r.curves[2]) == 2  # 8x8 then 4x4 maps: diag()[H//2:]
    assert np.isnan(r.high_frequency_delta[[0, 2]]).all()  # first block; resolution change
    np.testing.assert_allclose(r.high_frequency_delta[[1, 3, 4]], np.diff(r.high_frequency)[[0, 2, 3]])
    assert r.msa_lower_fraction == float(r.high_frequency_delta[3] < 0)
    back = FourierResult.from_json(r.to_json())
    np.testing.assert_allclose(back.curves[2], r.curves[2])


def test_non_square_is_refused():
    with pytest.raises(ValueError, match="square"):
        relative_log_amplitude(torch.zeros(1, 1, 4, 6))


def test_plots_fourier_and_high_frequency():
    from hdvit_lib.plots.representation import plot_fourier, plot_high_frequency

    torch.manual_seed(0)
    r = fourier_analysis(extract_features(toy.ToyNet(), toy.toy_batches(), use_cache=False), model_name="toy")
    fig = plot_fourier(r)
    assert len(fig.data) == len(r.curves) + 1  # one curve per block + the colour bar
    np.testing.assert_allclose(fig.data[3].y, r.curves[3])
    fig = plot_high_frequency({"toy": r})
    np.testing.assert_allclose(fig.data[0].y, r.high_frequency)
    np.testing.assert_allclose(fig.data[0].x, r.depth)
