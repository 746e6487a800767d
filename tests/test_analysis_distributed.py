"""Analyses under torchrun: 2 Gloo processes give the same Hessian spectrum and loss landscape as one.

Each rank computes a strided share of the mini-batches / grid points (checked by counting what each
rank solved), and every rank gets the whole result in the original order. Also checks
``python -m hdvit_lib analyze`` under torchrun against the same command in one process, on a
model cache filled here (so no test trains on the full smoke data).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hdvit_lib import distributed
from hdvit_lib.analysis.hessian import HessianSpectrum, spectrum, top_eigenvalues
from hdvit_lib.analysis.landscape import Landscape
from hdvit_lib.cli import main as cli_main
from hdvit_lib.train import cache

ROOT = Path(__file__).resolve().parents[1]
MODEL = "resnet18_tiny"
RTOL = 1e-6

SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    from torch import nn
    from hdvit_lib import distributed
    from hdvit_lib.analysis import hessian, landscape

    N_BATCHES, N_POINTS = 7, 5  # odd: the ranks get 4 and 3 mini-batches, 13 and 12 grid points

    def build():
        """A small conv net with BatchNorm (non-trivial running statistics) and 7 mini-batches."""
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(4, 3))
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
        g = torch.Generator().manual_seed(1)
        batches = [(torch.randn(6, 3, 6, 6, generator=g), torch.randint(0, 3, (6,), generator=g))
                   for _ in range(N_BATCHES)]
        return model, batches

    def run(model, batches):
        spec = hessian.spectrum(model, batches, N_BATCHES, k=3, stack=2, tol=1e-6, max_iter=200,
                                weight_decay=0.01, progress=False)
        land = landscape.loss_landscape(model, batches[:2], n_points=N_POINTS, span=0.5, chunk=4,
                                        progress=False)
        return spec, land

    if __name__ == "__main__":
        torch.set_num_threads(1)
        distributed.setup()
        counts = {"batches": 0, "points": 0}
        solve, grid_eval = hessian._solve, landscape._grid_eval
        def counting_solve(op, *a):
            counts["batches"] += len(op.batches)
            return solve(op, *a)
        def counting_grid_eval(model, flat, W, *a):
            counts["points"] += W.shape[0]
            return grid_eval(model, flat, W, *a)
        hessian._solve, landscape._grid_eval = counting_solve, counting_grid_eval
        spec, land = run(*build())
        hessian._solve, landscape._grid_eval = solve, grid_eval
        out = {"rank": distributed.rank(), "world": distributed.world_size(), "counts": counts,
               "spectrum": spec.to_dict(), "landscape": land.to_dict()}
        json.dump(out, open(f"{sys.argv[1]}.{distributed.rank()}", "w"))
        from hdvit_lib.cli import main
        cli = sys.argv[2:]
        main(["analyze", "hessian", *cli, "--out", sys.argv[1] + ".hessian"])
        main(["analyze", "landscape", *cli, "--out", sys.argv[1] + ".landscape"])
        distributed.teardown()
''')


def _cli_args(cache_dir: Path) -> list[str]:
    return ["--model", MODEL, "--preset", "smoke", "--cache", str(cache_dir), "--snapshot", "warmup",
            "--n-batches", "3", "--max-iter", "4", "--points", "3", "--no-progress"]


def _fill_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache entry for (MODEL, smoke), trained on 32 random images instead of the smoke data (the
    entry's key does not depend on the data, only on the configuration)."""
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))

    def tiny_loaders(cfg, root, download, seed, data_fraction, device=None):
        return SimpleNamespace(train=DataLoader(ds, batch_size=32), test=DataLoader(ds, batch_size=32),
                               mixup=None, num_classes=10)

    with monkeypatch.context() as m:
        m.setattr(cache, "_get_loaders", tiny_loaders)
        cache.load_or_train(MODEL, "smoke", cache_dir=cache_dir, progress=False, device="cpu")


def _assert_same(got: object, ref: object, keys: tuple[str, ...]) -> None:
    for key in keys:
        a, b = (np.asarray(getattr(r, key), dtype=float) for r in (got, ref))
        assert a.shape == b.shape, key
        np.testing.assert_allclose(a, b,
                                   rtol=RTOL, atol=1e-9, err_msg=key)


@pytest.mark.timeout(180)
def test_two_gloo_processes_match_one(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    _fill_cache(tmp_path / "cache", monkeypatch)
    script = tmp_path / "analyses.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HDVIT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(out), *_cli_args(tmp_path / "cache")]
    # launch the two ranks first, and compute the 1-process references while they run
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        build, run = (runpy.run_path(str(script))[k] for k in ("build", "run"))
        spec, land = run(*build())
        for analysis in ("hessian", "landscape"):
            cli_main(["analyze", analysis, *_cli_args(tmp_path / "cache"), "--out", str(tmp_path / f"ref.{analysis}")])
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]

    ranks = [json.loads(out.with_name(f"out.{r}").read_text()) for r in (0, 1)]
    assert [(o["rank"], o["world"]) for o in ranks] == [(0, 2), (1, 2)]
    # the work was split (4 + 3 mini-batches, 13 + 12 grid points), not repeated
    assert [o["counts"] for o in ranks] == [{"batches": 4, "points": 13}, {"batches": 3, "points": 12}]
    for o in ranks:  # every rank holds the whole result, in the 1-process order
        got = HessianSpectrum.from_dict(o["spectrum"])
        _assert_same(got, spec, ("eigenvalues", "n_hvp", "converged"))
        _assert_same(Landscape.from_dict(o["landscape"]), land, ("nll", "loss", "l2_norms", "accuracy"))
    assert spec.eigenvalues.shape == (7, 3) and spec.converged.all()
    assert np.ptp(spec.eigenvalues[:, 0]) > 1e-3 * np.abs(spec.eigenvalues[:, 0]).max()  # rows differ: order matters
    assert np.ptp(land.nll) > 1e-3  # the grid is not flat

    # the CLI: rank 0 wrote each result (once), equal to the 1-process command's
    assert stdout.count("hessian: ") == 1 and stdout.count("landscape: ") == 1, stdout
    h, h_ref = (HessianSpectrum.load(tmp_path / f"{p}.hessian") for p in ("out", "ref"))
    assert h.eigenvalues.shape == (3, 2) and h.model == h_ref.model == f"{MODEL}@warmup"
    _assert_same(h, h_ref, ("eigenvalues", "n_hvp", "converged"))
    lnd, l_ref = (Landscape.load(tmp_path / f"{p}.landscape") for p in ("out", "ref"))
    assert lnd.nll.shape == (3, 3) and lnd.n_images == l_ref.n_images == 256
    _assert_same(lnd, l_ref, ("nll", "loss", "l2_norms", "accuracy"))


def test_spectrum_rows_independent_of_stacking():
    """Mini-batch i's eigenvalues are those of top_eigenvalues(batch i, seed=seed + i), whatever
    the grouping (stack), which is what lets the ranks regroup their shares."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(5)]
    kw = {"k": 2, "tol": 1e-4, "max_iter": 6, "progress": False, "seed": 3}  # few iterations: start vectors matter
    one = spectrum(model, batches, 5, stack=1, **kw)
    three = spectrum(model, batches, 5, stack=3, **kw)
    np.testing.assert_allclose(three.eigenvalues, one.eigenvalues, rtol=RTOL)
    for i, b in enumerate(batches):
        single = top_eigenvalues(model, b, k=2, method="lanczos", tol=1e-4, max_iter=6, seed=3 + i)
        np.testing.assert_allclose(one.eigenvalues[i], single, rtol=RTOL)
    other = spectrum(model, batches, 5, stack=1, **(kw | {"seed": 4}))
    assert not np.allclose(other.eigenvalues, one.eigenvalues, rtol=1e-4)  # the start vectors matter here


def test_use_sharding_choices(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.use_sharding("auto") is False and distributed.use_sharding(False) is False
    with pytest.raises(ValueError, match="not initialised"):
        distributed.use_sharding(True)
    with pytest.raises(ValueError, match="'auto'"):
        distributed.use_sharding("yes")
    with pytest.raises(ValueError, match="not initialised"):
        spectrum(torch.nn.Linear(2, 2), [(torch.randn(3, 2), torch.tensor([0, 1, 0]))], 1, distributed=True)
