"""CIFAR-C-style corruptions against closed forms, PIL and colorsys; CIFAR-C files; robustness."""

from __future__ import annotations

import colorsys
import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from hdvit_lib.analysis.corruption import RobustnessCResult, corruption_robustness
from hdvit_lib.data.corruptions import (
    CORRUPTIONS,
    PARAMS,
    SEVERITIES,
    box_resize_matrix,
    cifar_c_dataset,
    corrupt,
    defocus_kernel,
    motion_kernel,
)

torch.set_num_threads(1)
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "motion_blur")


def natural_images(b: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Images with a 1/f amplitude spectrum, scaled into [0.1, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size)
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    r[0, 0] = 1.0
    z = torch.fft.ifft2(torch.randn(b, 3, size, size, generator=g, dtype=torch.complex64) / r).real
    z = z - z.amin(dim=(1, 2, 3), keepdim=True)
    return z / z.amax(dim=(1, 2, 3), keepdim=True) * 0.8 + 0.1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


@pytest.fixture(scope="module")
def img() -> torch.Tensor:
    return natural_images()


def test_shape_range_dtype_and_single_image(img):
    for name in CORRUPTIONS:
        for s in (1, 5):
            y = corrupt(img, name, s, seed=3)
            assert y.shape == img.shape and y.dtype == img.dtype
            assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
            assert not torch.equal(y, img), name
        assert corrupt(img[0], name, 2, seed=1).shape == img[0].shape
        assert torch.equal(corrupt(img[0], name, 2, seed=1)[None], corrupt(img[:1], name, 2, seed=1))


def test_psnr_decreases_with_severity(img):
    for name in CORRUPTIONS:
        p = [psnr(corrupt(img, name, s, seed=0), img) for s in SEVERITIES]
        for s, (a, b) in enumerate(itertools.pairwise(p), start=1):
            if name == "motion_blur" and s == 3:
                # The reference's severities 3 and 4 (sigma 2; radius 6 vs 8) differ only by
                # taps of weight < 1e-9: the same blur (see the module docstring).
                assert b == pytest.approx(a, abs=1e-4)
            else:
                assert b < a - 0.05, (name, s, p)


def test_determinism_by_seed(img):
    for name in CORRUPTIONS:
        a, b = corrupt(img, name, 3, seed=7), corrupt(img, name, 3, seed=7)
        assert torch.equal(a, b), name
        c = corrupt(img, name, 3, seed=8)
        assert torch.equal(a, c) != (name in RANDOM), name


def test_brightness_matches_hsv_reference():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # black
    x[0, :, 0, 1] = 0.4  # grey
    x[1, :, 1, 1] = torch.tensor([0.95, 0.2, 0.1], dtype=torch.float64)  # saturates V
    for s in SEVERITIES:
        c = PARAMS["brightness"][s - 1]
        y = corrupt(x, "brightness", s)
        ref = torch.empty_like(x)
        for bi in range(2):
            for i in range(4):
                for j in range(4):
                    h, sat, v = colorsys.rgb_to_hsv(*x[bi, :, i, j].tolist())
                    rgb = colorsys.hsv_to_rgb(h, sat, min(v + c, 1.0))
                    ref[bi, :, i, j] = torch.tensor(rgb, dtype=torch.float64)
        torch.testing.assert_close(y, ref, atol=1e-9, rtol=0)


def test_contrast_closed_form():
    x = 0.3 + 0.4 * natural_images(2, 16, seed=1).double()  # no clipping at any severity
    for s in SEVERITIES:
        c = PARAMS["contrast"][s - 1]
        y = corrupt(x, "contrast", s)
        mx, my = x.mean(dim=(2, 3), keepdim=True), y.mean(dim=(2, 3), keepdim=True)
        torch.testing.assert_close(my, mx)
        torch.testing.assert_close(y - my, c * (x - mx))


def test_noise_statistics():
    x = torch.full((8, 3, 32, 32), 0.5)
    for s in SEVERITIES:
        d = corrupt(x, "gaussian_noise", s, seed=s) - x
        assert float(d.mean()) == pytest.approx(0.0, abs=3e-3)
        assert float(d.std()) == pytest.approx(PARAMS["gaussian_noise"][s - 1], rel=0.03)
        lam = PARAMS["shot_noise"][s - 1]
        d = corrupt(x, "shot_noise", s, seed=s) - x  # Poisson(0.5 lam) / lam - 0.5
        assert float(d.mean()) == pytest.approx(0.0, abs=3e-3)
        assert float(d.var()) == pytest.approx(0.5 / lam, rel=0.06)
        y = corrupt(x, "impulse_noise", s, seed=s)
        flipped = y != x
        p = PARAMS["impulse_noise"][s - 1]  # binomial: within 4 standard deviations
        assert float(flipped.float().mean()) == pytest.approx(p, abs=4 * math.sqrt(p / x.numel()))
        assert set(y[flipped].unique().tolist()) <= {0.0, 1.0}
        n_flip = int(flipped.sum())
        salt = float((y[flipped] == 1).float().mean())
        assert salt == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / n_flip))


def test_defocus_kernels():
    def taps(sigma):
        w = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * sigma**2))
        return w / w.sum()

    for s, (r, a) in enumerate(PARAMS["defocus_blur"], start=1):
        k = defocus_kernel(r, a)
        assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1])
        if r < 1:  # the disk is one pixel: the kernel is the 3x3 Gaussian alone
            np.testing.assert_allclose(k, np.outer(taps(a), taps(a)))
    # r = 1.5: the 3x3 box (all 9 centres within 1.5) smoothed by sigma 0.1 (almost nothing).
    k = defocus_kernel(1.5, 0.1)
    assert k.shape == (5, 5)
    np.testing.assert_allclose(k[1:4, 1:4], np.full((3, 3), 1 / 9), atol=1e-6)
    x = torch.full((1, 3, 8, 8), 0.37)  # constant images stay constant (kernel sums to 1)
    torch.testing.assert_close(corrupt(x, "defocus_blur", 5), x)


def test_motion_kernel_is_imagemagicks():
    k = motion_kernel(6, 1.5, 0.0)  # 13 taps to the right of the centre
    w = np.exp(-np.arange(13.0) ** 2 / (2 * 1.5**2))
    np.testing.assert_allclose(k[12, 12:], w / w.sum())
    assert k.sum() == pytest.approx(1.0) and np.count_nonzero(k) == 13
    k90 = motion_kernel(6, 1.5, 90.0)  # straight down the rows
    np.testing.assert_allclose(k90[12:, 12], w / w.sum(), atol=1e-12)
    k45 = motion_kernel(6, 1.5, 45.0)  # the diagonal; tap i lands on round(i / sqrt 2)
    diag = np.zeros(13)
    np.add.at(diag, np.floor(np.arange(13) * math.sqrt(0.5) + 0.5).astype(int), w / w.sum())
    np.testing.assert_allclose(np.diag(k45)[12:], diag, atol=1e-12)
    assert np.count_nonzero(k45) == 9  # offsets 0, 1, 1, 2, 3, 4, 4, 5, 6, 6, 7, 8, 8
    x = torch.full((3, 3, 8, 8), 0.6)  # constant images stay constant (edge pixels repeated)
    torch.testing.assert_close(corrupt(x, "motion_blur", 5, seed=0), x)


def test_pixelate_matches_pil_box():
    for n_in, n_out in [(32, 30), (32, 27), (32, 20), (20, 32), (27, 32), (16, 13)]:
        a = np.random.default_rng(n_in * n_out).random((n_in, n_in)).astype(np.float32)
        ref = np.asarray(Image.fromarray(a, mode="F").resize((n_out, n_out), Image.BOX))
        m = box_resize_matrix(n_in, n_out)
        np.testing.assert_allclose(m @ a @ m.T, ref, atol=1e-5)
    x = natural_images(2, 32, seed=2)
    for s in SEVERITIES:
        n = int(32 * PARAMS["pixelate"][s - 1])
        ref = np.stack([[np.asarray(Image.fromarray(ch.numpy(), mode="F")
                                    .resize((n, n), Image.BOX).resize((32, 32), Image.BOX))
                         for ch in im] for im in x])
        np.testing.assert_allclose(corrupt(x, "pixelate", s).numpy(), np.clip(ref, 0, 1), atol=1e-5)


def test_jpeg_quality_and_flat_images():
    x = torch.full((1, 3, 16, 16), 128 / 255)
    torch.testing.assert_close(corrupt(x, "jpeg_compression", 5), x, atol=1.5 / 255, rtol=0)


def test_errors_name_the_valid_choices(img):
    with pytest.raises(ValueError, match="gaussian_noise"):
        corrupt(img, "fog", 1)
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 4, 5\)"):
        corrupt(img, "contrast", 6)
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 4, 5\)"):
        corrupt(img, "contrast", 0)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        corrupt(img[:, :1], "contrast", 1)


def write_fake_cifar_c(root, names=("contrast", "fog"), per=6, folder="CIFAR-100-C"):
    """Fake files in the released layout: pixel (0, 0, 0) of image i of severity s holds
    ``label`` when i < s (so a reader of that pixel scores s / per), else ``label + 1``."""
    d = root / folder
    d.mkdir(parents=True)
    labels = np.tile(np.arange(per) * 7 % 99, 5).astype(np.uint8)
    for name in names:
        data = np.zeros((5 * per, 32, 32, 3), dtype=np.uint8)
        for s in SEVERITIES:
            for i in range(per):
                row = (s - 1) * per + i
                data[row, :, :, 1] = 10 * s
                data[row, 0, 0, 0] = labels[row] if i < s else labels[row] + 1
        np.save(d / f"{name}.npy", data)
    np.save(d / "labels.npy", labels)
    return labels


def test_cifar_c_dataset_layout(tmp_path):
    labels = write_fake_cifar_c(tmp_path)
    ds = cifar_c_dataset(tmp_path, "fog", 3)
    assert len(ds) == 6 and ds.num_classes == 100
    assert ds.targets == [int(t) for t in labels[12:18]]
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == ds.targets[0]
    assert float(x[1, 5, 5]) == pytest.approx(30 / 255)  # severity 3 slice
    assert len(cifar_c_dataset(tmp_path / "CIFAR-100-C", "fog", 5, n=2)) == 2  # folder itself
    xs, ys = ds.tensors()
    assert xs.shape == (6, 3, 32, 32) and ys.tolist() == ds.targets
    with pytest.raises(FileNotFoundError, match="snow.npy"):
        cifar_c_dataset(tmp_path, "snow", 1)
    with pytest.raises(ValueError, match="elastic_transform"):
        cifar_c_dataset(tmp_path, "sleet", 1)
    with pytest.raises(ValueError, match="CIFAR-10-C"):
        cifar_c_dataset(tmp_path, "fog", 1, variant="CIFAR-1000-C")


class PixelReader(nn.Module):
    """Predicts class ``round(scale * x[:, 0, 0, 0])`` out of 100; records its mode."""

    def __init__(self, scale: float = 255.0) -> None:
        super().__init__()
        self.scale = scale
        self.dummy = nn.Parameter(torch.zeros(1))
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        v = x[:, 0, 0, 0] * self.scale
        return -(v[:, None] - torch.arange(100.0)[None]).abs() + 0 * self.dummy


def test_robustness_from_files(tmp_path):
    write_fake_cifar_c(tmp_path)
    model = PixelReader(scale=2 * 255.0).train()
    res = corruption_robustness(model, None, None, names=("contrast", "fog"), batch_size=4,
                                normalize=((0, 0, 0), (2, 2, 2)), root=tmp_path)
    expected = np.tile(np.arange(1, 6) / 6, (2, 1))  # severity s: s of 6 images right
    np.testing.assert_allclose(res.accuracy, expected)
    assert res.mean_accuracy == pytest.approx(expected.mean())
    assert model.training and not any(model.modes)
    back = RobustnessCResult.from_json(res.to_json())
    np.testing.assert_allclose(back.accuracy, res.accuracy)
    assert back.per_corruption["fog"] == pytest.approx(0.5)


class Threshold(nn.Module):
    """Class 1 when the image's mean exceeds 0.42, else class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)) - 0.42 + 0 * self.dummy
        return torch.stack([-m, m], dim=1)


def test_robustness_generated_closed_form():
    # Grey images at 0.3 (class 0) and 0.7 (class 1). Brightness adds c = .05, .1, .15, .2, .3
    # to grey 0.3: class 0 is lost from severity 3 on (0.45 > 0.42); 0.7 only gets brighter.
    # Contrast keeps every mean, so it never changes a prediction.
    x = torch.cat([torch.full((5, 3, 8, 8), 0.3), torch.full((5, 3, 8, 8), 0.7)])
    y = torch.tensor([0] * 5 + [1] * 5)
    res = corruption_robustness(Threshold(), x, y, names=("brightness", "contrast"), batch_size=3)
    np.testing.assert_allclose(res.accuracy, [[1, 1, 0.5, 0.5, 0.5], [1, 1, 1, 1, 1]])
    assert res.clean_accuracy == 1.0 and res.n_images == 10
    assert res.mean_accuracy == pytest.approx(0.85)
    with pytest.raises(ValueError, match="gaussian_noise"):
        corruption_robustness(Threshold(), x, y, names=("snow",))


def test_plot_accuracy_vs_robustness():
    from hdvit_lib.plots.alternet import plot_accuracy_vs_robustness

    fig = plot_accuracy_vs_robustness({"ResNet-50": (0.82, 0.51), "AlterNet-50": (0.84, 0.55)})
    (sc,) = fig.data
    assert list(sc.x) == [0.82, 0.84] and list(sc.y) == [0.51, 0.55]
    assert list(sc.text) == ["ResNet-50", "AlterNet-50"]
    assert sc.marker.color[0] != sc.marker.color[1]
