"""Tests for hdvit_lib.data: the offline set's statistics, CIFAR/ImageFolder round trips, loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdvit_lib.data import (
    MEAN_STD,
    authors_mixup,
    build_mixup,
    build_transform,
    generate,
    get_dataset,
    get_loaders,
    radial_power_spectrum,
    spectrum_slope,
    subsample,
)
from hdvit_lib.data.cifar_files import write_cifar10, write_cifar100
from hdvit_lib.presets import get_preset


@pytest.fixture(scope="module")
def synth():
    xtr, ytr = generate(2000, seed=0, split="train")
    xte, yte = generate(600, seed=0, split="test")
    return xtr, ytr, xte, yte


# ---------------------------------------------------------------- synthetic: generator


def test_synthetic_deterministic():
    a, la = generate(64, seed=3)
    b, lb = generate(64, seed=3)
    c, _ = generate(64, seed=4)
    d, _ = generate(64, seed=3, split="test")
    assert a.dtype == np.uint8 and a.shape == (64, 3, 32, 32)
    assert a.tobytes() == b.tobytes() and np.array_equal(la, lb)
    assert a.tobytes() != c.tobytes() and a.tobytes() != d.tobytes()
    assert np.bincount(la, minlength=10).tolist() == [7, 7, 7, 7, 6, 6, 6, 6, 6, 6]


def test_synthetic_power_spectrum_is_one_over_f_squared(synth):
    x = synth[0][:800].astype(np.float64) / 255
    # the radial spectrum of a known image: a single cosine of 5 cycles/image lands in bin f=5
    _yy, xx = np.mgrid[0:32, 0:32]
    f, p = radial_power_spectrum(np.cos(2 * np.pi * 5 * xx / 32)[None])
    assert f[np.argmax(p)] == 5
    slope = spectrum_slope(x)
    assert -2.5 < slope < -1.5, slope
    # white noise, by contrast, is flat
    assert (
        abs(spectrum_slope(np.random.default_rng(0).normal(size=(200, 32, 32)))) < 0.2
    )


def _fr() -> np.ndarray:
    f = np.fft.fftfreq(32, 1 / 32)
    return np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


def _low_features(x: np.ndarray) -> np.ndarray:
    """Pixels of the image low-passed to f <= 4 cycles/image (sampled on an 8x8 grid: no loss)."""
    spec = np.fft.fft2(x.astype(np.float64) / 255) * (_fr() <= 4)
    return np.fft.ifft2(spec).real[..., 2::4, 2::4].reshape(len(x), -1)


def _high_features(x: np.ndarray) -> np.ndarray:
    """Log energy of the image high-passed to f >= 7, in 16 orientation x 3 radius bins per channel
    (texture phase is random, so pixels carry no linear evidence; oriented energy does)."""
    f = np.fft.fftfreq(32, 1 / 32)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    fr = _fr()
    ori = np.floor((np.arctan2(fy, fx) % np.pi) / np.pi * 16).astype(int) % 16
    rad = np.digitize(fr, [7, 9.5, 12.5, 99]) - 1  # -1: below 7 (dropped)
    power = np.abs(np.fft.fft2(x.astype(np.float64) / 255)) ** 2
    feats = []
    for r in range(3):
        for o in range(16):
            m = (rad == r) & (ori == o)
            feats.append(np.log(power[..., m].mean(-1) + 1e-6))
    return np.stack(feats, -1).reshape(len(x), -1)


def _ridge_accuracy(ftr, ytr, fte, yte, lam=1.0) -> float:
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-8
    a, b = (ftr - mu) / sd, (fte - mu) / sd
    y = np.eye(int(ytr.max()) + 1)[ytr]
    w = np.linalg.solve(
        a.T @ a + lam * len(a) * 1e-2 * np.eye(a.shape[1]), a.T @ (y - y.mean(0))
    )
    return float(((b @ w).argmax(1) == yte).mean())


def test_synthetic_class_evidence_in_both_bands(synth):
    xtr, ytr, xte, yte = synth
    low = _ridge_accuracy(_low_features(xtr), ytr, _low_features(xte), yte)
    high = _ridge_accuracy(_high_features(xtr), ytr, _high_features(xte), yte)
    assert low > 0.3 and high > 0.3, (low, high)  # chance is 0.1
    # and neither band alone makes the task trivial
    assert low < 0.9 and high < 0.9, (low, high)
    # control: shuffled labels give chance
    perm = np.random.default_rng(0).permutation(ytr)
    assert _ridge_accuracy(_low_features(xtr), perm, _low_features(xte), yte) < 0.2


def test_synthetic_mean_std_constants():
    x = get_dataset("synthetic", "train", n=3000).data.float() / 255
    mean, std = MEAN_STD["synthetic"]
    assert np.allclose(x.mean((0, 2, 3)).numpy(), mean, atol=0.01)
    assert np.allclose(x.std((0, 2, 3)).numpy(), std, atol=0.01)


# ---------------------------------------------------------------- get_dataset


def test_get_dataset_synthetic_items_and_errors():
    ds = get_dataset("synthetic", "test", n=50, seed=1, num_classes=100)
    x, y = ds[7]
    assert (
        x.dtype == torch.float32
        and x.shape == (3, 32, 32)
        and 0 <= x.min()
        and x.max() <= 1
    )
    assert (
        ds.num_classes == 100 and isinstance(ds.targets[0], int) and y == ds.targets[7]
    )
    raw, labels = generate(50, seed=1, split="test", num_classes=100)
    assert torch.equal(x, torch.from_numpy(raw[7]).float() / 255) and labels[7] == y
    with pytest.raises(ValueError, match="synthetic, fractal, cifar10, cifar100, imagefolder"):
        get_dataset("mnist", "train")
    with pytest.raises(ValueError, match="train, test"):
        get_dataset("synthetic", "dev")


def _random_images(rng, n):
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_round_trip_through_torchvision(tmp_path, name):
    rng = np.random.default_rng(0)
    c = 10 if name == "cifar10" else 100
    tr, te = _random_images(rng, 23), _random_images(rng, 7)
    ytr, yte = rng.integers(0, c, 23).tolist(), rng.integers(0, c, 7).tolist()
    writer = write_cifar10 if name == "cifar10" else write_cifar100
    md5 = writer(tmp_path, (tr, ytr), (te, yte))
    assert len(md5) == (7 if name == "cifar10" else 3)
    # the real loader's MD5 check is on, and rejects files that are not the real archive
    with pytest.raises(RuntimeError, match="corrupted"):
        get_dataset(name, "train", root=tmp_path)
    for split, imgs, labels in (("train", tr, ytr), ("test", te, yte)):
        ds = get_dataset(name, split, root=tmp_path, verify=False)
        assert ds.num_classes == c and ds.targets == labels and len(ds) == len(imgs)
        for i in (0, len(imgs) - 1):
            x, y = ds[i]
            # HWC uint8 written -> CHW float read: pixel (row 5, col 9) of every channel
            assert torch.equal(
                x, torch.from_numpy(imgs[i]).permute(2, 0, 1).float() / 255
            )
            assert y == labels[i]
    assert get_dataset(name, "train", root=tmp_path, verify=False).classes[1] == (
        "automobile" if name == "cifar10" else "class_1"
    )


def test_imagefolder_round_trip(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    written = {}
    for split in ("train", "val"):
        for cls in ("cat", "dog", "eel"):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(2):
                img = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / split / cls / f"{k}.png")
                written[(split, cls, k)] = img
    ds = get_dataset("imagefolder", "test", root=tmp_path)
    assert ds.num_classes == 3 and ds.targets == [0, 0, 1, 1, 2, 2]
    x, y = ds[3]
    assert y == 1 and torch.equal(
        x, torch.from_numpy(written[("val", "dog", 1)]).permute(2, 0, 1).float() / 255
    )
    small = get_dataset("imagefolder", "train", root=tmp_path, image_size=16)
    assert small[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="root/train"):
        get_dataset("imagefolder", "train", root=tmp_path / "nowhere")


# ---------------------------------------------------------------- subsampling


def test_subsample_exact_per_class_counts():
    ds = get_dataset("synthetic", "train", n=1000)  # 100 per class
    sub = subsample(ds, 0.06, seed=5)
    assert np.bincount(sub.targets, minlength=10).tolist() == [6] * 10
    again = subsample(ds, 0.06, seed=5)
    other = subsample(ds, 0.06, seed=6)
    assert torch.equal(sub.data, again.data) and not torch.equal(sub.data, other.data)
    # every chosen image is one of the originals, with its label
    originals = {ds.data[i].numpy().tobytes(): ds.targets[i] for i in range(len(ds))}
    assert all(
        originals[sub.data[i].numpy().tobytes()] == sub.targets[i]
        for i in range(len(sub))
    )
    # unbalanced classes: round(fraction * n_c) each
    uneven = ds.select([i for i in range(1000) if ds.targets[i] != 3 or i % 4 == 0])
    n_c = np.bincount(uneven.targets, minlength=10)
    got = np.bincount(subsample(uneven, 0.3, 0).targets, minlength=10)
    assert got.tolist() == [round(0.3 * n) for n in n_c]
    with pytest.raises(ValueError):
        subsample(ds, 0.0, 0)


# ---------------------------------------------------------------- transforms and loaders


def test_transforms():
    torch.manual_seed(0)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    x = torch.rand(3, 32, 32)
    y = build_transform("none", mean, std)(x)
    assert torch.allclose(
        y * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1),
        x,
        atol=1e-6,
    )
    crop = build_transform("crop_flip", (0, 0, 0), (1, 1, 1))
    outs = [crop(x) for _ in range(20)]
    assert len({o.numpy().tobytes() for o in outs}) > 1
    # each output is a (possibly mirrored) shifted window of the zero-padded input
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4))
    windows = {
        pad[:, i : i + 32, j : j + 32].numpy().tobytes()
        for i in range(9)
        for j in range(9)
    }
    windows |= {
        pad[:, i : i + 32, j : j + 32].flip(-1).numpy().tobytes()
        for i in range(9)
        for j in range(9)
    }
    assert all(o.numpy().tobytes() in windows for o in outs)
    paper = build_transform("paper", (0, 0, 0), (1, 1, 1))(x)
    assert paper.shape == x.shape and 0 <= paper.min() and paper.max() <= 1
    assert build_mixup("crop_flip", 10) is None
    with pytest.raises(ValueError, match="none, crop_flip, paper"):
        build_transform("autoaugment", mean, std)


def test_mixup_soft_targets():
    torch.manual_seed(0)
    mix = build_mixup("paper", num_classes=10, label_smoothing=0.1)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    xm, soft = mix(x.clone(), y)
    assert xm.shape == x.shape and soft.shape == (8, 10)
    assert torch.allclose(soft.sum(1), torch.ones(8), atol=1e-5)
    assert (
        soft.min() >= 0.1 / 10 - 1e-6
    )  # label smoothing keeps every class above eps / C


def test_mixup_is_the_authors_recipe():
    # configs/cifar100_vit.yaml: mixup_alpha 1.0, cutmix_alpha 0.8, prob 1.0, smoothing 0.1
    for mix in (build_mixup("paper", num_classes=10), authors_mixup(10)):
        assert (mix.mixup_alpha, mix.cutmix_alpha, mix.mix_prob) == (1.0, 0.8, 1.0)
        assert mix.label_smoothing == 0.1 and mix.mode == "batch"
    assert authors_mixup(7, label_smoothing=0.0).num_classes == 7


def test_mixup_with_a_fixed_lambda_matches_a_hand_computation():
    lam, c, eps = 0.3, 5, 0.1
    mix = authors_mixup(c)
    mix._params_per_batch = lambda: (lam, False)  # fix the draw: plain mixup with weight lam
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 4])
    xm, soft = mix(x.clone(), y)
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    smooth = torch.full((4, c), eps / c)
    smooth[torch.arange(4), y] = 1 - eps + eps / c  # label smoothing 0.1
    torch.testing.assert_close(soft, lam * smooth + (1 - lam) * smooth.flip(0))
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    assert soft[0, 3] == pytest.approx(eps / c)  # a class in neither image keeps eps / C


def test_get_loaders_smoke_preset():
    cfg = get_preset("smoke", n_train=200, n_test=60, batch_size=32)
    a = get_loaders(cfg, seed=0)
    b = get_loaders(cfg, seed=0)
    assert (
        a.num_classes == 10 and a.mixup is None and a.mean == MEAN_STD["synthetic"][0]
    )
    torch.manual_seed(0)
    xa, ya = next(iter(a.train))
    torch.manual_seed(0)
    xb, yb = next(iter(b.train))
    assert xa.shape == (32, 3, 32, 32) and torch.equal(ya, yb) and torch.equal(xa, xb)
    # test / train_eval: fixed order, no augmentation, normalised
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD["synthetic"])
    raw = get_dataset("synthetic", "test", n=60)
    xt, yt = next(iter(a.test))
    assert torch.allclose(xt * std + mean, raw.data[:32].float() / 255, atol=1e-5)
    assert yt.tolist() == raw.targets[:32]
    xe1, _ = next(iter(a.train_eval))
    xe2, _ = next(iter(a.train_eval))
    assert torch.equal(xe1, xe2)
    assert sum(len(y) for _, y in a.train) == 200
    # a fraction of the data, class balanced
    c = get_loaders(cfg, seed=0, data_fraction=0.1)
    assert np.bincount(c.train.dataset.targets).tolist() == [2] * 10


def test_get_loaders_paper_cifar_fixture(tmp_path):
    rng = np.random.default_rng(2)
    write_cifar100(
        tmp_path,
        (_random_images(rng, 40), (np.arange(40) % 100).tolist()),
        (_random_images(rng, 10), list(range(10))),
    )
    cfg = get_preset("paper", batch_size=16)
    ld = get_loaders(cfg, root=tmp_path, verify=False)
    assert (
        ld.num_classes == 100
        and ld.mixup is not None
        and ld.mean == MEAN_STD["cifar100"][0]
    )
    x, y = next(iter(ld.train))
    _xm, soft = ld.mixup(x, y)
    assert (
        soft.shape == (16, 100) and len(ld.train) == 2
    )  # drop_last: mixup needs even batches


def test_paper_preset_reads_cifar_from_the_default_root(tmp_path, monkeypatch):
    """`paper` needs no root: CIFAR-100 lives in $HDVIT_DATA (torchvision's layout); the preset's
    download=True finds the files present and downloads nothing."""
    rng = np.random.default_rng(3)
    images = _random_images(rng, 20)
    write_cifar100(tmp_path, (images, (np.arange(20) % 100).tolist()), (images[:10], list(range(10))))
    monkeypatch.setenv("HDVIT_DATA", str(tmp_path))
    from hdvit_lib.data import default_data_root

    assert default_data_root() == tmp_path
    ld = get_loaders(get_preset("paper", batch_size=10), verify=False)
    x, _ = next(iter(ld.test))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD["cifar100"])
    np.testing.assert_allclose((x * std + mean)[0].permute(1, 2, 0).numpy() * 255, images[0], atol=1e-3)
    with pytest.raises(ValueError, match="imagefolder"):
        get_dataset("imagefolder", "train")  # a folder data set still needs its root


def test_image_size_reads_a_tensor_or_the_first_batch() -> None:
    """(height, width) of an image tensor, of batches of images, or of (images, labels) pairs."""
    from hdvit_lib.data.batches import image_size

    assert image_size(torch.zeros(2, 3, 8, 6)) == (8, 6)
    assert image_size([torch.zeros(2, 3, 5, 7)]) == (5, 7)
    assert image_size([(torch.zeros(2, 3, 4, 9), torch.zeros(2))]) == (4, 9)
