"""Tests for hdvit_lib.analysis.variance: against numpy, and on maps of known variance."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from hdvit_lib.analysis.features import Features, extract_features
from hdvit_lib.analysis.variance import VarianceResult, feature_map_variance

_spec = importlib.util.spec_from_file_location("_toy", Path(__file__).with_name("test_features.py"))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


def _np_var(a: torch.Tensor) -> float:
    a = a.numpy().astype(np.float64)
    b, c, h, w = a.shape
    flat = a.reshape(b, c, h * w)
    dev = flat - flat.mean(-1, keepdims=True)
    return float(((dev**2).sum(-1) / (h * w - 1)).mean())


def test_matches_numpy_on_toynet():
    torch.manual_seed(0)
    feats = extract_features(toy.ToyNet(), toy.toy_batches(), use_cache=False)
    r = feature_map_variance(feats, model_name="toy")
    want = [_np_var(o) if o.ndim == 4 else np.nan for o in feats.outputs]
    np.testing.assert_allclose(r.variance, want, rtol=1e-6)
    assert np.isnan(r.variance[-2:]).all()
    np.testing.assert_allclose(r.input_variance, _np_var(feats.inputs), rtol=1e-6)
    prev = np.array([_np_var(feats.inputs)] + want[:-1])
    np.testing.assert_allclose(r.delta, np.array(want) - prev, rtol=1e-6)
    assert r.msa_reduce_fraction == float(r.delta[3] < 0)
    assert r.conv_mlp_increase_fraction == np.mean([r.delta[1] > 0, r.delta[2] > 0, r.delta[4] > 0])
    back = VarianceResult.from_json(r.to_json())
    np.testing.assert_allclose(back.variance, r.variance)
    assert back.kinds == r.kinds


def test_known_variances_and_summary():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=g)
    z = torch.randn(6, 4, 8, 8, generator=g)
    avg = z.mean((-2, -1), keepdim=True).expand_as(z)  # spatially constant: variance 0
    outs = [z, 3 * z, avg + 0.1 * z, 2 * (avg + 0.1 * z), avg]
    f = Features(names=list("abcde"), kinds=["embed", "conv", "msa", "mlp", "msa"], stages=[0] * 5,
                 outputs=outs, inputs=x, targets=None)
    r = feature_map_variance(f)
    v = _np_var(z)
    np.testing.assert_allclose(r.variance, [v, 9 * v, 0.01 * v, 0.04 * v, 0.0], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(r.delta[1:], [8 * v, -8.99 * v, 0.03 * v, -0.04 * v], rtol=1e-5)
    assert r.msa_reduce_fraction == 1.0 and r.conv_mlp_increase_fraction == 1.0
    f2 = Features(names=["a", "b"], kinds=["embed", "conv"], stages=[0, 0], outputs=[z, z / 2], inputs=x,
                  targets=None)
    r2 = feature_map_variance(f2)
    assert np.isnan(r2.msa_reduce_fraction) and r2.conv_mlp_increase_fraction == 0.0


def test_model_and_loader_form_equals_features_form():
    torch.manual_seed(1)
    model, batches = toy.ToyNet(), toy.toy_batches(2)
    a = feature_map_variance(model, batches)
    b = feature_map_variance(extract_features(model, batches, use_cache=False))
    np.testing.assert_allclose(a.variance, b.variance)


def test_plot_variance_shades_msa_and_subsampling_and_has_a_model_menu():
    from hdvit_lib.plots.representation import plot_variance

    torch.manual_seed(0)
    feats = extract_features(toy.ToyNet(), toy.toy_batches(), use_cache=False)
    r = feature_map_variance(feats, model_name="toy")
    fig = plot_variance({"a": r, "b": r})
    assert len(fig.data) == 2 and fig.data[0].visible and not fig.data[1].visible
    np.testing.assert_allclose(np.asarray(fig.data[0].y, dtype=float)[:5], r.variance[:5])
    # ToyNet: conv2 subsamples (blue), msa (grey), pool (blue): spans end at their depths
    spans = sorted((round(s.x1, 6), s.fillcolor) for s in fig.layout.shapes)
    assert [x for x, _ in spans] == [round(d, 6) for d in (2 / 5, 3 / 5, 5 / 5)]
    assert "128" in spans[1][1]  # the MSA span is grey
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["all", "a", "b"]
    assert fig.layout.updatemenus[0].buttons[2].args[0]["visible"] == [False, True]
