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


@pytest.mark.parametrize("size", [8, 9, 16])
def test_matches_the_official_definition(size):
    x = torch.randn(3, 4, size, size, generator=torch.Generator().manual_seed(size))
    official = _official_numpy(x.numpy())
    np.testing.assert_allclose(relative_log_amplitude(x, include_nyquist=False), official, atol=1e-5)
    ours = relative_log_amplitude(x)  # towards the negative corner: same amplitudes (real input)
    n = min(len(ours), len(official))
    np.testing.assert_allclose(ours[:n], official[:n], atol=1e-5)
    assert len(ours) == size // 2 + 1 and ours[0] == 0.0
    np.testing.assert_allclose(frequencies(size), 2 * np.arange(size // 2 + 1) / size)


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_diagonal_plane_wave_peaks_at_its_frequency(k):
    size = 16
    curve = relative_log_amplitude(_plane_wave(size, k).repeat(2, 3, 1, 1))
    freqs = frequencies(size)
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
    assert abs(a[-1]) < 0.5  # white noise: flat spectrum
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
    np.testing.assert_allclose(r.depth, np.arange(5) / 6)
    for i in range(5):
        np.testing.assert_allclose(r.curves[i], relative_log_amplitude(feats.outputs[i]))
        assert r.high_frequency[i] == r.curves[i][-1]
    assert len(r.curves[0]) == 5 and len(r.curves[2]) == 3  # 8x8 then 4x4 maps
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
