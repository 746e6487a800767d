"""Tests for hdvit_lib.train: schedule (closed form), learning, exact resume, atomic writes,
NaN guard, and the model cache (keys, hits, misses)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hdvit_lib.presets import get_preset
from hdvit_lib.train import (
    History,
    cache,
    checkpoint,
    make_scheduler,
    train,
    warmup_cosine,
)
from hdvit_lib.train.cache import CACHE_VERSION, cache_key, load_or_train, run_config

torch.set_num_threads(1)


def blobs(n: int = 192, d: int = 8, classes: int = 3, seed: int = 0) -> TensorDataset:
    """Linearly separable Gaussian blobs: class c centred at 3 * e_c."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.5 * torch.randn(n, d, generator=g)
    x[torch.arange(n), y] += 3.0
    return TensorDataset(x, y)


def mlp(d: int = 8, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.GELU(), nn.Linear(16, classes))


def loaders(batch: int = 32, seed: int = 0):
    train_loader = DataLoader(blobs(), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(blobs(96, seed=1), batch_size=48)
    return SimpleNamespace(train=train_loader, test=test_loader, train_eval=None, num_classes=3, mixup=None)


def cfg(**kw):
    base = {"epochs": 3, "warmup_epochs": 1, "batch_size": 32, "lr": 1e-2, "snapshot_every": 2}
    return get_preset("smoke", **(base | kw))


def test_schedule_matches_closed_form():
    lr, warm, total = 0.1, 5, 25
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt, warm, total)
    got = []
    for _ in range(total):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    s = np.arange(total)
    want = np.where(s < warm, lr * (s + 1) / warm, lr * 0.5 * (1 + np.cos(np.pi * (s - warm) / (total - warm))))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(0.02) and got[4] == pytest.approx(0.1) and got[5] == pytest.approx(0.1)
    assert got[15] == pytest.approx(0.05)  # half-way through the cosine
    assert warmup_cosine(25, warm, total) == 0.0


def test_tiny_model_learns_and_history_round_trips(tmp_path):
    ld = loaders()
    c = cfg(epochs=4)
    h = train(mlp(), ld, c, progress=False)
    assert h.epoch == [1, 2, 3, 4]
    assert h.train_loss[-1] < 0.6 * h.train_loss[0]
    assert h.test_acc[-1] > 0.95
    steps = len(ld.train)
    assert len(h.step_loss) == 4 * steps
    # the lr the last step of each epoch used, against the closed form
    for e, got in zip(h.epoch, h.lr):
        assert got == pytest.approx(c["lr"] * warmup_cosine(e * steps - 1, steps, 4 * steps), rel=1e-12)
    assert History.from_json(h.to_json()) == h


class Interrupt(Exception):
    pass


class Interrupting:
    """Delegates to a DataLoader; on its ``epoch``-th pass raises after ``step`` batches."""

    def __init__(self, loader, epoch, step):
        self.loader, self.epoch, self.step, self.passes = loader, epoch, step, 0
        self.sampler, self.generator = loader.sampler, loader.generator

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.passes += 1
        for i, batch in enumerate(self.loader):
            if self.passes == self.epoch and i == self.step:
                raise Interrupt
            yield batch


def test_resume_gives_the_same_run(tmp_path):
    c = cfg()
    ref_model = mlp()
    ref = train(ref_model, loaders(), c, ckpt_dir=tmp_path / "a", progress=False)

    ld = loaders()
    with pytest.raises(Interrupt):
        train(mlp(), Interrupting(ld.train, 2, 3), c, ckpt_dir=tmp_path / "b", test_loader=ld.test, progress=False)
    assert checkpoint.load(tmp_path / "b" / "last.pt")["epoch"] == 1
    torch.rand(7)  # disturb the global RNG: the resumed run must restore it
    model = mlp(seed=123)  # another init: the weights must come from last.pt
    resumed = train(model, loaders(), c, ckpt_dir=tmp_path / "b", progress=False)

    for key in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "step_loss"):
        assert getattr(resumed, key) == getattr(ref, key), key
    for p, q in zip(model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
    # a finished run is not trained again
    again = train(mlp(seed=5), loaders(), c, ckpt_dir=tmp_path / "b", progress=False)
    assert again.step_loss == ref.step_loss
    assert sorted(p.name for p in (tmp_path / "b").glob("snap_*.pt")) == ["snap_0.pt", "snap_1.pt", "snap_2.pt",
                                                                         "snap_3.pt"]
    with pytest.raises(ValueError, match="settings"):
        train(mlp(), loaders(), cfg(lr=2e-2), ckpt_dir=tmp_path / "b", progress=False)


def test_atomic_save_survives_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.atomic_save({"w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_save({"w": torch.zeros(3)}, path)
    with pytest.raises(OSError):
        checkpoint.atomic_save({"w": torch.zeros(3)}, tmp_path / "new.pt")
    monkeypatch.undo()
    assert torch.equal(checkpoint.load(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class TurnsNaN(nn.Module):
    def __init__(self, after: int):
        super().__init__()
        self.net, self.calls, self.after = mlp(), 0, after

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.training and self.calls > self.after else out


def test_nan_guard_stops_and_keeps_last_checkpoint(tmp_path):
    ld = loaders()
    steps = len(ld.train)
    model = TurnsNaN(after=steps + 2)  # the 3rd step of epoch 2
    with pytest.raises(FloatingPointError) as err:
        train(model, ld, cfg(), ckpt_dir=tmp_path, progress=False)
    msg = str(err.value)
    assert f"epoch 2, step 3/{steps}" in msg and "last finite loss" in msg and "Lower the learning rate" in msg
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    last_finite = float(msg.split("last finite loss ")[1].split(";")[0])
    assert math.isfinite(last_finite)


# --- the cache ---------------------------------------------------------------------------------

def test_cache_key_changes_with_every_field(monkeypatch):
    base = run_config("vit_ti")
    assert cache_key(base) == cache_key(run_config("vit_ti"))
    assert cache_key(dict(reversed(base.items()))) == cache_key(base)
    keys = {cache_key(base)}
    variants = [
        run_config("resnet18"),
        run_config("vit_ti", model_cfg={"patch_size": 2}),
        run_config("vit_ti", model_cfg={"tiny": False}),
        run_config("vit_ti", dataset="cifar10"),
        run_config("vit_ti", data_fraction=0.5),
        run_config("vit_ti", seed=1),
        run_config("vit_ti", preset="cpu"),
    ]
    for k, v in base["train"].items():
        if k in ("dataset", "tiny"):
            continue  # covered above (dataset, tiny flag)
        new = (not v) if isinstance(v, bool) else v + 1 if isinstance(v, (int, float)) else 1 if v is None \
            else v + "_x"
        variants.append(run_config("vit_ti", train_overrides={k: new}))
    monkeypatch.setattr(cache, "CACHE_VERSION", CACHE_VERSION + 1)
    variants.append(run_config("vit_ti"))
    for v in variants:
        keys.add(cache_key(v))
    assert len(keys) == len(variants) + 1
    # settings that only steer analyses do not retrain
    monkeypatch.undo()
    assert cache_key(run_config("vit_ti", train_overrides={"hessian_k": 9})) == cache_key(base)
    assert cache_key(run_config("vit_ti", train_overrides={"download": True})) == cache_key(base)


def test_load_or_train_hits_and_misses(tmp_path, monkeypatch):
    built = []

    def fake_loaders(cfg, root, download, seed, data_fraction, device=None):
        built.append(cfg["lr"])
        return loaders(batch=cfg["batch_size"], seed=seed)

    monkeypatch.setattr(cache, "_get_loaders", fake_loaders)
    monkeypatch.setattr(cache, "_get_model", lambda name, num_classes, tiny, **kw: mlp(classes=num_classes))
    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path))
    over = {"epochs": 2, "warmup_epochs": 1, "batch_size": 32, "lr": 1e-2, "snapshot_every": 1}

    first = load_or_train("mlp", train_overrides=over, progress=False, device="cpu")
    assert len(built) == 1 and first.dir.parent == tmp_path
    assert not first.model.training
    assert first.snapshots() == [0, 1, 2]
    assert first.config["num_classes"] == 3 and first.config["train"]["lr"] == 1e-2
    for k, v in first.snapshot("final").items():
        assert torch.equal(v, first.model.state_dict()[k])
    assert not torch.equal(first.snapshot("init")["0.weight"], first.snapshot(2)["0.weight"])
    with pytest.raises(ValueError, match="available"):
        first.snapshot(7)

    second = load_or_train("mlp", train_overrides=over, progress=False, device="cpu")
    assert len(built) == 1  # loaded, not retrained
    assert second.dir == first.dir and second.history == first.history
    for k, v in second.model.state_dict().items():
        assert torch.equal(v, first.model.state_dict()[k])

    other = load_or_train("mlp", train_overrides=over | {"lr": 3e-2}, progress=False, device="cpu")
    assert len(built) == 2 and other.dir != first.dir
    assert not torch.equal(other.model.state_dict()["0.weight"], first.model.state_dict()["0.weight"])
    assert other.history.train_loss != first.history.train_loss


def test_cli_train_prints_cache_dir_and_accuracy(tmp_path, monkeypatch, capsys):
    from hdvit_lib import cli

    seen = {}

    def fake_loaders(cfg, root, download, seed, data_fraction, device=None):
        seen.update(cfg=cfg, seed=seed, fraction=data_fraction)
        return loaders(batch=cfg["batch_size"], seed=seed)

    monkeypatch.setattr(cache, "_get_loaders", fake_loaders)
    monkeypatch.setattr(cache, "_get_model", lambda name, num_classes, tiny, **kw: mlp(classes=num_classes))
    monkeypatch.setattr(cli, "known_models", lambda: ["mlp"])
    cli.main(["train", "--model", "mlp", "--dataset", "synthetic", "--preset", "smoke", "--fraction", "0.5",
              "--seed", "3", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--cache", str(tmp_path),
              "--device-augment", "4", "--no-progress"])
    out = capsys.readouterr().out
    entry = next(tmp_path.glob("mlp-synthetic-*"))
    assert f"cache: {entry}" in out
    acc = History.load(entry / "history.json").final("test_acc")
    assert f"final test accuracy: {acc:.4f} (epoch 2" in out
    assert seen["cfg"]["epochs"] == 2 and seen["cfg"]["lr"] == 0.01 and seen["seed"] == 3 and seen["fraction"] == 0.5
    assert seen["cfg"]["device_augment"] == 4
    cli.main(["cache", "--cache", str(tmp_path)])
    assert "model=mlp dataset=synthetic epochs=2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    helptext = capsys.readouterr().out
    assert "train" in helptext and "cache" in helptext


def test_mixup_soft_targets_match_label_smoothing():
    """With a 'mixup' that returns the label-smoothed one-hot targets unchanged (lambda = 1), the
    soft-target loss equals cross-entropy with label smoothing: eps/K + (1 - eps) on the label."""
    eps, k = 0.1, 3

    def smoothed(x, y):
        return x, torch.nn.functional.one_hot(y, k).float() * (1 - eps) + eps / k

    c = cfg(epochs=1, label_smoothing=eps)
    ref = train(mlp(), loaders(), c, progress=False)
    soft = train(mlp(), loaders(), c, mixup=smoothed, progress=False)
    np.testing.assert_allclose(soft.step_loss, ref.step_loss, rtol=1e-5)
    assert soft.train_acc == pytest.approx(ref.train_acc)
    plain = train(mlp(), loaders(), cfg(epochs=1, label_smoothing=0.0), progress=False)
    assert abs(plain.step_loss[0] - ref.step_loss[0]) > 1e-3  # smoothing changes the loss


def test_cache_two_concurrent_callers_train_once(tmp_path, monkeypatch):
    import threading

    built = []

    def slow_loaders(cfg, root, download, seed, data_fraction, device=None):
        built.append(threading.get_ident())
        return loaders(batch=cfg["batch_size"], seed=seed)

    monkeypatch.setattr(cache, "_get_loaders", slow_loaders)
    monkeypatch.setattr(cache, "_get_model", lambda name, num_classes, tiny, **kw: mlp(classes=num_classes))
    over = {"epochs": 2, "batch_size": 32}
    results = [None, None]

    def call(i):
        results[i] = load_or_train("mlp", train_overrides=over, cache_dir=tmp_path, progress=False, device="cpu")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1  # the second caller waited on the lock, then loaded
    a, b = (r.model.state_dict() for r in results)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in results[0].dir.iterdir() if p.name != ".lock") == [
        "config.json", "done.json", "history.json", "last.pt", "model.pt", "snap_0.pt", "snap_1.pt", "snap_2.pt"]


def test_cache_key_uses_the_models_full_settings():
    """A default given explicitly is the same entry; a changed default would be a new one; the
    stored settings (after the JSON round-trip) rebuild the same model."""
    from hdvit_lib.models import REGISTRY_NAMES, _valid_keys, count_params, get_model

    assert cache_key(run_config("vit_local")) == cache_key(run_config("vit_local", model_cfg={"window": 3}))
    assert cache_key(run_config("vit_local")) != cache_key(run_config("vit_local", model_cfg={"window": 5}))
    for name in REGISTRY_NAMES:
        config = run_config(name)
        assert config["model_cfg"], name  # the tiny defaults are spelled out
        rebuilt = get_model(name, tiny=config["tiny"], **config["model_cfg"])
        assert count_params(rebuilt) == count_params(get_model(name, tiny=True)), name
        # at paper size too, every configurable key is spelled out (so a changed default is a new entry)
        paper = run_config(name, model_cfg={"tiny": False})["model_cfg"]
        assert sorted(paper) == _valid_keys(name), name
    paper_vit = {"tiny": False}
    assert cache_key(run_config("vit_ti", model_cfg=paper_vit)) == \
        cache_key(run_config("vit_ti", model_cfg=paper_vit | {"patch_size": 2, "depth": 12}))
    assert cache_key(run_config("resnet50", model_cfg=paper_vit)) == \
        cache_key(run_config("resnet50", model_cfg=paper_vit | {"num_blocks": [3, 4, 6, 3]}))


def test_amp_dtype_picks_float16_where_bfloat16_is_emulated(monkeypatch):
    from hdvit_lib.modes import amp_dtype

    assert amp_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert amp_dtype("cuda") == torch.float16  # e.g. a T4: bf16 only by emulation
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp_dtype("cuda") == torch.bfloat16  # Ampere and newer


def test_float16_training_scales_the_loss_and_resumes_exactly(tmp_path):
    """amp=float16 (the path of GPUs without bf16) trains with a GradScaler on the CPU too: it learns,
    its scale is checkpointed, and an interrupted run resumes to the same curve."""
    c = cfg(clip_grad=5.0)
    ref_model, ld0 = mlp(), loaders()
    ref = train(ref_model, ld0, c, ckpt_dir=tmp_path / "a", progress=False, amp=torch.float16)
    assert ref.step_loss[-1] < ref.step_loss[0] - 0.1
    # the test set is evaluated in the dtype the run trains in (float16 here, not the device's bf16)
    from hdvit_lib.train.loop import evaluate

    assert ref.test_loss[-1] == evaluate(ref_model, ld0.test, "cpu", amp=torch.float16)[0]
    assert ref.test_loss[-1] != evaluate(ref_model, ld0.test, "cpu", amp=torch.bfloat16)[0]
    state = checkpoint.load(tmp_path / "a" / "last.pt")
    assert state["scaler"]["scale"] > 1  # a GradScaler ran
    fp32 = train(mlp(), loaders(), c, progress=False, amp=None)
    assert fp32.step_loss != ref.step_loss  # the float16 path is really another computation
    np.testing.assert_allclose(fp32.step_loss, ref.step_loss, rtol=0.05)
    ld = loaders()
    with pytest.raises(Interrupt):
        train(mlp(), Interrupting(ld.train, 2, 3), c, ckpt_dir=tmp_path / "b", test_loader=ld.test,
              progress=False, amp=torch.float16)
    last = checkpoint.load(tmp_path / "b" / "last.pt")
    last["scaler"]["scale"] = 1024.0  # a scale the fresh scaler would not have: it must be restored
    checkpoint.atomic_save(last, tmp_path / "b" / "last.pt")
    resumed = train(mlp(), loaders(), c, ckpt_dir=tmp_path / "b", progress=False, amp=torch.float16)
    assert resumed.step_loss == ref.step_loss
    assert checkpoint.load(tmp_path / "b" / "last.pt")["scaler"]["scale"] == 1024.0
    with pytest.raises(ValueError, match="auto"):
        train(mlp(), loaders(), c, progress=False, amp=torch.float64)
