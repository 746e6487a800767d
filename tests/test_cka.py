"""Tests for hdvit_lib.analysis.cka: identities, invariances, dense references, and the
minibatch estimator's behaviour on independent features."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from hdvit_lib.analysis.cka import CKAResult, cka_matrix, hsic_unbiased, linear_cka
from hdvit_lib.analysis.features import Features, extract_features

torch.set_num_threads(1)
_spec = importlib.util.spec_from_file_location("_toy", Path(__file__).with_name("test_features.py"))
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


def _np_cka_biased(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019) through centred Gram matrices: tr(K H L H) normalised."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, ell = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)
    return hsic(k, ell) / np.sqrt(hsic(k, k) * hsic(ell, ell))


def _np_hsic_unbiased(k: np.ndarray, ell: np.ndarray) -> float:
    """Song et al. (2012), Eq. 5, written with explicit sums over the zero-diagonal Grams."""
    n = k.shape[0]
    kt, lt = k * (1 - np.eye(n)), ell * (1 - np.eye(n))
    term1 = np.sum(kt * lt.T)
    term2 = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    term3 = 2 * np.sum(kt.sum(0) * lt.sum(1)) / (n - 2)
    return (term1 + term2 - term3) / (n * (n - 3))


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("d", [5, 300])  # d < n and d > n use different formulas
def test_linear_cka_identity_invariances_and_dense_reference(d):
    x, y = _rand(40, d), _rand(40, 7, seed=1) + 0.5
    y = torch.cat([x[:, :3] @ _rand(3, 7, seed=2), y], 1)  # related to x
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    ref = _np_cka_biased(x.numpy(), y.numpy())
    assert linear_cka(x, y) == pytest.approx(ref, rel=1e-10)
    q, _ = torch.linalg.qr(_rand(d, d, seed=3))
    assert linear_cka(x @ q * 7.5, y) == pytest.approx(ref, rel=1e-9)  # orthogonal + isotropic scale
    assert linear_cka(x + 3.0, y) == pytest.approx(ref, rel=1e-9)  # translation
    assert 0 < ref < 1


def test_hsic_unbiased_matches_the_explicit_formula():
    x, y = _rand(12, 6), _rand(12, 9, seed=1)
    k, ell = x @ x.T, y @ y.T
    assert hsic_unbiased(k, ell) == pytest.approx(_np_hsic_unbiased(k.numpy(), ell.numpy()), rel=1e-10)


def _features(outputs, n):
    return Features(names=[f"b{i}" for i in range(len(outputs))], kinds=["conv"] * len(outputs),
                    stages=[0] * len(outputs), outputs=outputs, inputs=torch.zeros(n, 3, 2, 2), targets=None)


def test_minibatch_cka_matches_pairwise_reference_and_invariances():
    x = _rand(96, 4, 3, 3)
    q, _ = torch.linalg.qr(_rand(36, 36, seed=1))
    outs = [x, (x.reshape(96, -1) @ q * 0.3).float(), torch.tanh(x[:, :2]), _rand(96, 10, seed=2)]
    r = cka_matrix(_features(outs, 96), batch_size=32)
    assert r.n_batches == 3 and r.n_images == 96
    np.testing.assert_allclose(np.diag(r.matrix), 1.0, atol=1e-12)
    np.testing.assert_allclose(r.matrix, r.matrix.T, atol=1e-12)
    assert r.matrix[0, 1] == pytest.approx(1.0, abs=1e-6)  # orthogonal transform + scaling
    flat = [o.reshape(96, -1).double() for o in outs]
    for i in range(4):
        for j in range(4):
            num = sum(hsic_unbiased(flat[i][s:s + 32] @ flat[i][s:s + 32].T, flat[j][s:s + 32] @ flat[j][s:s + 32].T)
                      for s in (0, 32, 64))
            den_i = sum(hsic_unbiased(flat[i][s:s + 32] @ flat[i][s:s + 32].T, flat[i][s:s + 32] @ flat[i][s:s + 32].T)
                        for s in (0, 32, 64))
            den_j = sum(hsic_unbiased(flat[j][s:s + 32] @ flat[j][s:s + 32].T, flat[j][s:s + 32] @ flat[j][s:s + 32].T)
                        for s in (0, 32, 64))
            assert r.matrix[i, j] == pytest.approx(num / np.sqrt(den_i * den_j), rel=1e-8, abs=1e-10)


def test_independent_random_features_score_about_zero():
    a, b = _rand(640, 256, seed=4), _rand(640, 256, seed=5)
    r = cka_matrix(_features([a, b], 640), batch_size=64)
    assert abs(r.matrix[0, 1]) < 0.05
    biased = np.mean([linear_cka(a[s:s + 64], b[s:s + 64]) for s in range(0, 640, 64)])
    assert biased > 0.5  # the pitfall the unbiased HSIC avoids


def test_model_one_pass_equals_features_form():
    torch.manual_seed(0)
    model, batches = toy.ToyNet(), toy.toy_batches(3, batch=8)
    a = cka_matrix(model, batches, model_name="toy")
    b = cka_matrix(extract_features(model, batches, use_cache=False), batch_size=8)
    assert a.n_batches == 3 and a.names == b.names and a.kinds[3] == "msa"
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-6)
    back = CKAResult.from_json(a.to_json())
    np.testing.assert_allclose(back.matrix, a.matrix)


def test_plot_cka():
    from hdvit_lib.plots.representation import plot_cka

    r = cka_matrix(toy.ToyNet(), toy.toy_batches(2, batch=8), model_name="toy")
    fig = plot_cka(r)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), r.matrix)
    assert len(fig.data[0].x) == 7
