"""hdvit_lib.data.device_loader: batched crop/flip against the per-image reference, RandAugment
groups, epochs, resume and DDP sharding (on the CPU: the same code runs on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdvit_lib.data.device_loader import (
    DeviceLoader,
    crop_flip_batch,
    rand_augment_groups,
)
from hdvit_lib.data.transforms import MEAN_STD


class U8Set:
    """Images that are exactly k/255 (as CIFAR's), labels 0..n-1."""

    def __init__(self, n: int = 50, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        self.targets, self.num_classes = list(range(n)), n

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i].float() / 255, self.targets[i]


def test_crop_flip_batch_equals_the_per_image_reference():
    x = torch.randn(6, 3, 8, 10)
    rows, cols = torch.tensor([0, 8, 3, 4, 8, 1]), torch.tensor([8, 0, 5, 4, 2, 7])
    flip = torch.tensor([False, True, True, False, True, False])
    got = crop_flip_batch(x, rows, cols, flip, padding=4)
    for b in range(6):
        ref = F.pad(x[b], (4, 4, 4, 4))[:, rows[b]:rows[b] + 8, cols[b]:cols[b] + 10]
        ref = ref.flip(-1) if flip[b] else ref
        assert torch.equal(got[b], ref), b


def test_rand_augment_groups_share_draws_within_a_group_only():
    from torchvision.transforms.v2 import RandAugment

    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    x = img.expand(32, 3, 32, 32).clone()  # one image 32 times
    out = rand_augment_groups(x, 8, RandAugment(num_ops=2, magnitude=9))
    for g in range(4):  # same input, same group -> same output
        assert all(torch.equal(out[8 * g], out[8 * g + k]) for k in range(8))
    assert len({out[8 * g].numpy().tobytes() for g in range(4)}) > 1  # groups draw their own ops
    calls = []
    rand_augment_groups(torch.zeros(20, 3, 4, 4, dtype=torch.uint8), 8, lambda t: calls.append(len(t)) or t)
    assert calls == [8, 8, 4]
    with pytest.raises(ValueError, match="at least 1"):
        rand_augment_groups(x, 0, lambda t: t)


@pytest.mark.parametrize("augment", ["none", "crop_flip", "paper"])
def test_epochs_cover_the_set_and_stay_in_distribution(augment):
    ds = U8Set(50)
    mean, std = MEAN_STD["cifar100"]
    loader = DeviceLoader(ds, 16, augment, mean, std, "cpu", seed=3)
    assert loader.images.dtype == torch.uint8 and len(loader) == 4
    seen, shapes = [], []
    for x, y in loader:
        seen += y.tolist()
        shapes.append(x.shape[0])
        pix = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
        assert pix.min() >= -1e-6 and pix.max() <= 1 + 1e-6
        if augment == "none":  # unaugmented: exactly the stored images, normalised
            assert torch.allclose(pix, ds.x[y].float() / 255, atol=1e-6)
    assert sorted(seen) == list(range(50)) and shapes == [16, 16, 16, 2]
    assert seen != list(range(50))  # shuffled
    dropped = DeviceLoader(ds, 16, augment, mean, std, "cpu", drop_last=True)
    assert len(dropped) == 3 and sum(len(y) for _, y in dropped) == 48


def test_crop_flip_draws_are_uniform():
    """Offsets uniform on 0..8 and flips at p = 1/2, checked on a batch of one marked image."""
    ds = U8Set(1)
    ds.x.zero_()
    ds.x[0, :, 0, 0] = 255  # one bright pixel at the top-left: its position reveals the crop and flip
    loader = DeviceLoader(ds, 1, "crop_flip", (0, 0, 0), (1, 1, 1), "cpu", seed=0)
    pos = []
    for _ in range(900):
        x, _ = next(iter(loader))
        nz = x[0, 0].nonzero()
        pos.append(tuple(nz[0].tolist()) if len(nz) else None)
    inside = [p for p in pos if p is not None]
    # the pixel is visible when the crop keeps row 0 / col 0 (offset <= 4): P = (5/9)^2 = 0.309
    assert abs(len(inside) / 900 - (5 / 9) ** 2) < 0.05
    flipped = sum(c > 15 for _, c in inside) / len(inside)
    assert abs(flipped - 0.5) < 0.08


def test_generator_state_resumes_the_same_batches():
    ds = U8Set(40)
    mean, std = MEAN_STD["cifar100"]
    a = DeviceLoader(ds, 8, "crop_flip", mean, std, "cpu", seed=1)
    list(a)  # epoch 1
    state = a.generator.get_state()
    epoch2 = [(x.clone(), y.clone()) for x, y in a]
    b = DeviceLoader(ds, 8, "crop_flip", mean, std, "cpu", seed=99)
    b.generator.set_state(state)
    for (xa, ya), (xb, yb) in zip(epoch2, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_shards_make_up_the_global_batch():
    ds = U8Set(48)
    mean, std = MEAN_STD["cifar100"]
    full = DeviceLoader(ds, 12, "crop_flip", mean, std, "cpu", seed=5)
    ranks = [full.shard(r, 3, 12) for r in range(3)]
    for r in ranks:
        r.generator = torch.Generator().manual_seed(5)  # as every rank of a job seeds the same
    whole = list(DeviceLoader(ds, 12, "crop_flip", mean, std, "cpu", seed=5))
    parts = [list(r) for r in ranks]
    for k, (x, y) in enumerate(whole):
        got_y = torch.stack([parts[r][k][1] for r in range(3)], 1).flatten()
        got_x = torch.stack([parts[r][k][0] for r in range(3)], 1).flatten(0, 1)
        assert torch.equal(got_y, y) and torch.equal(got_x, x)
    with pytest.raises(ValueError, match="multiple of 5"):
        full.shard(0, 5, 12)


def test_float_images_kept_exact_and_bad_arguments():
    class FloatSet(U8Set):
        def __getitem__(self, i):
            return self.x[i].float() / 255 + 1e-4, self.targets[i]

    loader = DeviceLoader(FloatSet(4), 4, "none", (0, 0, 0), (1, 1, 1), "cpu")
    assert loader.images.dtype == torch.float32
    x, y = next(iter(loader))
    np.testing.assert_allclose(x, loader.dataset.x[y].float() / 255 + 1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="none, crop_flip, paper"):
        DeviceLoader(U8Set(4), 4, "autoaugment", (0,), (1,), "cpu")
    with pytest.raises(ValueError, match="at least 1"):
        DeviceLoader(U8Set(4), 4, "paper", (0,), (1,), "cpu", group=0)


def test_get_loaders_uses_it_when_the_preset_says_so():
    from hdvit_lib.data import get_loaders
    from hdvit_lib.presets import get_preset

    cfg = get_preset("smoke", n_train=200, n_test=50, device_augment=4, augment="paper")
    ld = get_loaders(cfg, device="cpu")
    assert isinstance(ld.train, DeviceLoader) and ld.train.group == 4 and ld.train.drop_last
    x, _y = next(iter(ld.train))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert not isinstance(get_loaders(get_preset("smoke", n_train=200, n_test=50)).train, DeviceLoader)


def test_training_on_it_resumes_exactly(tmp_path):
    """The trainer checkpoints the loader's generator (and the global RNG RandAugment uses): a run
    interrupted in epoch 2 and resumed equals an uninterrupted one, step for step."""
    from test_train import Interrupt, Interrupting

    from hdvit_lib.presets import get_preset
    from hdvit_lib.train import checkpoint, train

    torch.set_num_threads(1)
    cfg = get_preset("smoke", epochs=3, warmup_epochs=1, batch_size=16, augment="paper", device_augment=4)

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.Flatten(), torch.nn.Linear(256, 48))

    def loader():
        mean, std = MEAN_STD["cifar100"]
        return DeviceLoader(U8Set(48), 16, "paper", mean, std, "cpu", seed=0, drop_last=True, group=4)

    ref = train(m_ref := model(), loader(), cfg, ckpt_dir=tmp_path / "a", progress=False)
    with pytest.raises(Interrupt):
        train(model(), Interrupting(loader(), 2, 1), cfg, ckpt_dir=tmp_path / "b", progress=False)
    assert checkpoint.load(tmp_path / "b" / "last.pt")["epoch"] == 1
    torch.rand(5)
    resumed = train(m := model(), loader(), cfg, ckpt_dir=tmp_path / "b", progress=False)
    assert resumed.step_loss == ref.step_loss and len(ref.step_loss) == 9
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), m_ref.parameters(), strict=True))


def test_paper_preset_trains_end_to_end_on_cifar_files(tmp_path, monkeypatch):
    """The ``paper`` recipe through the zoo cache on CIFAR-100 files (written in torchvision's
    format): DeviceLoader (crop/flip/RandAugment per group), mixup/cutmix, label smoothing, warm-up,
    one epoch of a tiny model; a second call loads the cached entry instead of training."""
    from hdvit_lib.data import get_loaders
    from hdvit_lib.data.cifar_files import write_cifar100
    from hdvit_lib.train import cache

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 32, 32, 3), dtype=np.uint8)
    write_cifar100(tmp_path / "data", (images[:32], list(range(32))), (images[32:], list(range(16))))
    built = []

    def fixture_loaders(cfg, root, download, seed, data_fraction, device=None):
        ld = get_loaders(cfg, root=tmp_path / "data", seed=seed, data_fraction=data_fraction, device=device,
                         verify=False)  # the fixture files are not the real archive (MD5)
        built.append(ld)
        return ld

    monkeypatch.setattr(cache, "_get_loaders", fixture_loaders)
    overrides = {"epochs": 1, "warmup_epochs": 1, "batch_size": 8, "tiny": True}
    t = cache.load_or_train("resnet50", preset="paper", train_overrides=overrides, cache_dir=tmp_path / "zoo",
                            device="cpu", progress=False)
    assert isinstance(built[0].train, DeviceLoader) and built[0].train.group == 8 and built[0].mixup is not None
    assert t.history.epochs_done == 1 and len(t.history.step_loss) == 4
    assert all(np.isfinite(t.history.step_loss)) and 0 <= t.history.final("test_acc") <= 1
    again = cache.load_or_train("resnet50", preset="paper", train_overrides=overrides, cache_dir=tmp_path / "zoo",
                                device="cpu", progress=False)
    assert len(built) == 1 and again.history.step_loss == t.history.step_loss


def test_image_datasets_hand_over_their_uint8_tensor():
    """CIFAR and the synthetic set are ``ImageDataset``s: their uint8 tensor is used as it is (no
    per-item pass), and the batches equal the item-by-item path's."""
    from hdvit_lib.data.datasets import ImageDataset

    u8 = U8Set(40)
    img = ImageDataset(u8.x, u8.targets, 40)
    a = DeviceLoader(img, 8, "crop_flip", (0.5,) * 3, (0.25,) * 3, "cpu", seed=4)
    assert a.images.data_ptr() == img.data.data_ptr()
    b = DeviceLoader(u8, 8, "crop_flip", (0.5,) * 3, (0.25,) * 3, "cpu", seed=4)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
