"""DDP: 2 CPU processes (gloo, launched by torchrun) follow the same loss curve as 1 process on
the same global batch: DistributedSampler rank r reads samples r, r+2, ... so the two ranks'
k-th batches make up the k-th global batch, and DDP averages the two half-batch gradients."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from hdvit_lib.train import train

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from hdvit_lib.presets import get_preset
    from hdvit_lib.train import distributed, train

    def build():
        """A model without BatchNorm or dropout, a fixed data order, and a preset."""
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 4))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(128, 6, generator=g), torch.randint(0, 4, (128,), generator=g)
        train_loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
        test_loader = DataLoader(TensorDataset(x[:40], y[:40]), batch_size=16)
        cfg = get_preset("smoke", epochs=3, warmup_epochs=1, batch_size=16, lr=1e-2)
        return model, train_loader, test_loader, cfg

    class Images:
        """48 random 3x8x8 images (multiples of 1/255, as CIFAR's) with 4 classes."""
        def __init__(self):
            g = torch.Generator().manual_seed(3)
            self.x = torch.randint(0, 256, (48, 3, 8, 8), generator=g).float() / 255
            self.targets = torch.randint(0, 4, (48,), generator=g).tolist()
            self.num_classes = 4
        def __len__(self):
            return 48
        def __getitem__(self, i):
            return self.x[i], self.targets[i]

    def build_device_loader():
        """A conv net and a DeviceLoader (shuffled, crop/flip drawn per image on the device)."""
        from hdvit_lib.data.device_loader import DeviceLoader
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 36, 4))
        loader = DeviceLoader(Images(), 16, "crop_flip", (0.5,) * 3, (0.25,) * 3, "cpu", seed=2)
        cfg = get_preset("smoke", epochs=2, warmup_epochs=1, batch_size=16, lr=1e-2)
        return model, loader, cfg

    if __name__ == "__main__":
        torch.set_num_threads(1)
        device = distributed.setup()
        model, train_loader, test_loader, cfg = build()
        h = train(model, train_loader, cfg, ckpt_dir=sys.argv[1], device=device, test_loader=test_loader,
                  progress=False)
        m2, loader2, cfg2 = build_device_loader()
        h2 = train(m2, loader2, cfg2, device=device, progress=False)
        from hdvit_lib import distributed as D
        first_labels = next(iter(D.shard_train_loader(build_device_loader()[1], 16, 0)))[1].tolist()
        # the cache under DDP: rank 0 decides and writes, every rank trains once, then loads
        from types import SimpleNamespace
        from hdvit_lib.train import cache
        calls = []
        def fake_loaders(cfg, root, download, seed, data_fraction, device=None):
            calls.append(1)
            _, tl, vl, _ = build()
            return SimpleNamespace(train=tl, test=vl, mixup=None, num_classes=4)
        cache._get_loaders = fake_loaders
        cache._get_model = lambda name, num_classes, tiny, **kw: build()[0]
        over = {k: cfg[k] for k in ("epochs", "warmup_epochs", "batch_size", "lr")}
        runs = [cache.load_or_train("mlp", train_overrides=over, cache_dir=sys.argv[3], device=device,
                                    progress=False) for _ in range(2)]
        json.dump({"rank": distributed.rank(), "world": distributed.world_size(), "history": h.to_dict(),
                   "device_loader_step_loss": h2.step_loss, "device_loader_first_labels": first_labels,
                   "cache_calls": len(calls), "cache_dirs": [str(r.dir) for r in runs],
                   "cache_step_loss": [r.history.step_loss for r in runs]},
                  open(f"{sys.argv[2]}.{distributed.rank()}", "w"))
        distributed.teardown()
''')


def test_two_gloo_processes_match_one(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path / "ckpt"), str(tmp_path / "out.json"), str(tmp_path / "cache")]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.loads((tmp_path / f"out.json.{r}").read_text()) for r in (0, 1)]
    assert [o["world"] for o in outs] == [2, 2]

    torch.set_num_threads(1)
    model, train_loader, test_loader, cfg = runpy.run_path(str(script))["build"]()
    ref = train(model, train_loader, cfg, device="cpu", test_loader=test_loader, progress=False)

    for out in outs:  # every rank reports the global curves
        h = out["history"]
        assert len(h["step_loss"]) == len(ref.step_loss) == 3 * 128 // 16
        for key in ("step_loss", "train_loss", "train_acc", "test_loss", "test_acc", "lr"):
            np.testing.assert_allclose(h[key], getattr(ref, key), atol=1e-4, rtol=0, err_msg=key)
    assert ref.step_loss[-1] < ref.step_loss[0] - 0.05  # it trained, so the curves are not trivially equal
    # only rank 0 wrote: one set of checkpoint files, and its weights are the 1-process weights
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["last.pt", "snap_0.pt", "snap_1.pt", "snap_2.pt", "snap_3.pt"]
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state["model"][k], v, atol=1e-5, rtol=0)

    # load_or_train under DDP: one training (on all ranks), one entry, the second call loads it
    for out in outs:
        assert out["cache_calls"] == 1
        assert len(set(out["cache_dirs"])) == 1
        for curve in out["cache_step_loss"]:
            np.testing.assert_allclose(curve, ref.step_loss, atol=1e-4, rtol=0)
    assert outs[0]["cache_dirs"] == outs[1]["cache_dirs"]
    assert len(list((tmp_path / "cache").glob("*/done.json"))) == 1

    # the DeviceLoader (the paper preset's) shards the same way: each rank takes items r, r+2, ...
    # of every global batch, augmented identically on both ranks
    m2, loader2, cfg2 = runpy.run_path(str(script))["build_device_loader"]()
    ref2 = train(m2, loader2, cfg2, device="cpu", progress=False)
    assert ref2.step_loss[0] != ref2.step_loss[-1]
    halves = [out["device_loader_first_labels"] for out in outs]
    assert [len(h) for h in halves] == [8, 8]
    whole = next(iter(runpy.run_path(str(script))["build_device_loader"]()[1]))[1].tolist()
    assert [halves[i % 2][i // 2] for i in range(16)] == whole  # rank r holds items r, r + 2, ...
    for out in outs:
        np.testing.assert_allclose(out["device_loader_step_loss"], ref2.step_loss, atol=1e-4, rtol=0)
