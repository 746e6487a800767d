"""Failures a reader meets (issue 14): the paper preset's download reaching the training path,
downloads without network, the CLI's user mistakes, damaged checkpoints in the cache, and invalid
configurations that must leave no cache folder behind.

CIFAR-100 is faked in the real archive format (``hdvit_lib.data.cifar_files``) by a stand-in for
torchvision's download function, with torchvision's expected MD5s set to the fixture's, so that
the real ``verify=True`` path runs.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hdvit_lib import presets
from hdvit_lib.errors import DownloadError, UnreadableCheckpoint
from hdvit_lib.train import cache

torch.set_num_threads(1)
N_IMAGES = 20
OFFLINE = urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))


def _cifar100_images():
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(N_IMAGES, 32, 32, 3), dtype=np.uint8)
    return images, (np.arange(N_IMAGES) % 100).tolist()


@pytest.fixture
def fake_cifar_download(tmp_path, monkeypatch):
    """torchvision's download replaced by one that writes the fixture (and records the URL);
    torchvision's expected MD5s set to the fixture's. Returns the list of URLs fetched."""
    import torchvision.datasets.cifar as tv

    from hdvit_lib.data.cifar_files import write_cifar100

    images, labels = _cifar100_images()
    md5 = write_cifar100(tmp_path / "reference", (images, labels), (images, labels))
    monkeypatch.setattr(tv.CIFAR100, "train_list", [["train", md5["train"]]])
    monkeypatch.setattr(tv.CIFAR100, "test_list", [["test", md5["test"]]])
    monkeypatch.setattr(tv.CIFAR100, "meta", {**tv.CIFAR100.meta, "md5": md5["meta"]})
    fetched = []

    def download(url, download_root, filename=None, md5=None, **kw):
        fetched.append(url)
        write_cifar100(download_root, (images, labels), (images, labels))

    monkeypatch.setattr(tv, "download_and_extract_archive", download)
    monkeypatch.setenv("HDVIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path / "cache"))
    return fetched


def _linear(name, num_classes, tiny, **kw):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


def test_paper_preset_downloads_cifar_on_the_training_path(fake_cifar_download, monkeypatch, capsys):
    """A chapter with preset='paper' on a fresh machine: ``train_runs`` -> ``load_or_train`` ->
    ``get_loaders`` fetches CIFAR-100 (the preset's download=True), which is not part of the key."""
    from hdvit_lib.experiments.common import run_spec, train_runs

    quick = {"epochs": 1, "warmup_epochs": 0, "batch_size": 10, "weights": "trained"}
    monkeypatch.setitem(presets.PRESETS, "paper", {**presets.PRESETS["paper"], **quick})
    monkeypatch.setattr(cache, "_get_model", _linear)
    cfg = presets.get_preset("paper") | {"device": "cpu"}
    out = train_runs({"linear": run_spec("stand_in")}, cfg)
    assert fake_cifar_download == ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"]
    assert out["linear"].config["num_classes"] == 100 and out["linear"].history.epochs_done == 1
    assert "linear: test accuracy" in capsys.readouterr().out
    key = out["linear"].config["key"]
    assert cache.cache_key(cache.run_config("stand_in", "paper", train_overrides={"download": False})) == key


def test_cifar_download_without_network_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv

    from hdvit_lib.data import get_dataset

    def offline(*a, **k):
        raise OFFLINE

    monkeypatch.setattr(tv, "download_and_extract_archive", offline)
    monkeypatch.setenv("HDVIT_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DownloadError) as e:
        get_dataset("cifar100", "train", root=tmp_path, download=True)
    text = str(e.value)
    for said in ("cifar-100-python.tar.gz", "Temporary failure in name resolution", str(tmp_path / "cifar-100-python"),
                 "$HDVIT_DATA", str(tmp_path / "elsewhere")):
        assert said in text
    assert e.value.__suppress_context__  # no socket traceback chained under it
    # without download, the message says how to get the files as well
    with pytest.raises(RuntimeError, match="missing or corrupted.*download=True.*extract it into"):
        get_dataset("cifar100", "train", root=tmp_path)


def test_checkpoint_download_without_network_says_where_to_put_the_file(tmp_path, monkeypatch):
    from hdvit_lib import pretrained as P

    def offline(*a, **k):
        raise OFFLINE

    monkeypatch.setattr(P.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as e:
        P.load_pretrained("vit_ti", cache_dir=tmp_path, download=True, progress=False)
    text = str(e.value)
    assert P.CHECKPOINTS["vit_ti"].url in text and str(tmp_path / P.CHECKPOINTS["vit_ti"].asset) in text
    assert "$HDVIT_CACHE/checkpoints" in text and e.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []  # no partial file


@pytest.mark.parametrize("argv, said", [
    (["train", "--model", "vit_tiny"], "unknown model 'vit_tiny'; choose one of resnet18, resnet50, vit_ti"),
    (["train", "--model", "vit_ti", "--epochs", "0"], "argument --epochs: 0 is invalid: must be a positive integer"),
    (["train", "--model", "vit_ti", "--batch-size", "0"], "argument --batch-size: 0 is invalid: must be a positive"),
    (["train", "--model", "vit_ti", "--fraction", "1.5"], "1.5 is invalid: must be a number in (0, 1]"),
    (["train", "--model", "vit_ti", "--dataset", "cifar"], "invalid choice: 'cifar' (choose from 'synthetic', 'fractal', 'cifar10'"),
    (["analyze", "hessian", "--model", "vit_ti", "--out", "x.json", "--snapshot", "last"], "'last' is not init"),
])
def test_cli_user_mistakes_are_one_error_line(argv, said, capsys):
    from hdvit_lib import cli

    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and said in err
    assert [line for line in err.splitlines() if "error:" in line] == [err.strip().splitlines()[-1]]


def test_cli_datasets_are_the_data_modules():
    from hdvit_lib import cli
    from hdvit_lib.data import NAMES

    assert tuple(cli.DATASETS) == tuple(NAMES)


def test_cli_download_failure_is_one_error_line(tmp_path, monkeypatch, capsys):
    from hdvit_lib import cli

    def offline(*a, **k):
        raise DownloadError("could not download https://example/x.tar.gz (URLError: no network).\nPlace it in /d.")

    monkeypatch.setattr(cache, "load_or_train", offline)
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--model", "vit_ti", "--cache", str(tmp_path), "--no-progress"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: could not download https://example/x.tar.gz" in err


def mlp(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, classes))


def loaders(batch: int = 32, seed: int = 0):
    from types import SimpleNamespace

    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.arange(64) % 3)
    return SimpleNamespace(train=DataLoader(data, batch_size=batch), test=DataLoader(data, batch_size=batch),
                           train_eval=None, num_classes=3, mixup=None)


def _cached(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_get_loaders", lambda cfg, root, download, seed, fraction, device=None:
                        loaders(batch=cfg["batch_size"], seed=seed))
    monkeypatch.setattr(cache, "_get_model", lambda name, num_classes, tiny, **kw: mlp(classes=num_classes))
    over = {"epochs": 1, "warmup_epochs": 0, "batch_size": 32, "snapshot_every": 1}
    return lambda: cache.load_or_train("mlp", train_overrides=over, progress=False, device="cpu",
                                       cache_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_cache_file_names_the_entry_and_never_suggests_unsafe_loading(damage, tmp_path, monkeypatch):
    run = _cached(tmp_path, monkeypatch)
    entry = run().dir
    for name in ("model.pt", "snap_1.pt"):
        f = entry / name
        f.write_bytes(f.read_bytes()[:100] if damage == "truncate" else b"not a checkpoint" * 8)
    with pytest.raises(UnreadableCheckpoint) as e:
        run()
    text = str(e.value)
    assert str(entry / "model.pt") in text and f"rm -r '{entry}'" in text and "retrain" in text
    assert "weights_only" not in text and e.value.__suppress_context__
    (entry / "model.pt").write_bytes(b"")
    with pytest.raises(UnreadableCheckpoint, match="snap_1.pt.*cache entry"):
        cache.Trained(nn.Identity(), None, {"train": {"warmup_epochs": 0}}, entry).snapshot(1)


def test_damaged_resume_point_is_named(tmp_path, monkeypatch):
    from hdvit_lib.train import train

    (tmp_path / "last.pt").write_bytes(b"\x80\x02garbage")
    cfg = presets.get_preset("smoke", epochs=1, warmup_epochs=0, batch_size=32)
    with pytest.raises(UnreadableCheckpoint, match="last.pt.*resume point.*delete it") as e:
        train(mlp(), loaders(), cfg, ckpt_dir=tmp_path, device="cpu", progress=False)
    assert "weights_only" not in str(e.value)


def test_release_file_that_fails_to_load_is_not_trusted(tmp_path):
    """The SHA-256 sidecar is written only once a release file has loaded: a garbage file, or one whose
    keys do not fit, is never recorded as trusted for a later load."""
    from hdvit_lib import pretrained as P

    path = tmp_path / P.CHECKPOINTS["vit_ti"].asset
    path.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(UnreadableCheckpoint, match="Delete it .*download=True") as e:
        P.load_pretrained("vit_ti", cache_dir=tmp_path, model=nn.Linear(2, 2), check_prefix=False)
    assert "weights_only" not in str(e.value)
    assert not (tmp_path / (path.name + ".sha256")).exists()
    torch.save({"name": "x", "state_dict": {"w": torch.zeros(3)}}, path)
    with pytest.raises(P.CheckpointMismatchError):
        P.load_pretrained("vit_ti", cache_dir=tmp_path, model=nn.Linear(2, 2), check_prefix=False)
    assert not (tmp_path / (path.name + ".sha256")).exists()
    fits = nn.Linear(2, 2)
    torch.save({"name": "x", "state_dict": fits.state_dict()}, path)
    P.load_checkpoint(path, "resnet50", model=nn.Linear(2, 2), check_prefix=False)  # identity remap: it fits
    assert (tmp_path / (path.name + ".sha256")).read_text().split()[0] == P.sha256_file(path)


@pytest.mark.parametrize("model, model_cfg, dataset", [
    ("pit_ti", {"heads": (3, 4, 8)}, None),           # the model cannot be built
    ("vit_ti_tiny", {"patch_size": 3}, None),
    ("resnet18_tiny", {}, "imagefolder"),             # no data root: fails while building the loaders
])
def test_invalid_config_leaves_no_cache_folder(model, model_cfg, dataset, tmp_path):
    with pytest.raises(ValueError):
        cache.load_or_train(model, dataset=dataset, model_cfg=model_cfg, cache_dir=tmp_path, progress=False,
                            device="cpu")
    assert list(Path(tmp_path).iterdir()) == []
