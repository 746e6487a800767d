"""Command line: ``python -m hdvit_lib <command>`` for long runs outside the notebooks.

    python -m hdvit_lib train --model vit_ti --dataset synthetic --preset smoke [--epochs N]
    torchrun --nproc_per_node=4 -m hdvit_lib train --model vit_ti --preset paper   # DDP
    python -m hdvit_lib cache                                                       # list cached runs
    python -m hdvit_lib analyze hessian --model vit_ti --preset smoke --out spectrum.json
    torchrun --nproc_per_node=4 -m hdvit_lib analyze landscape --model resnet18 --preset paper \
        --snapshot warmup --out landscape.json          # grid points / mini-batches split over ranks
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from hdvit_lib.presets import NAMES

ANALYSES = ("hessian", "landscape")
DATASETS = ("synthetic", "fractal", "cifar10", "cifar100", "imagefolder")  # hdvit_lib.data.NAMES (not imported: torch)


def _checked(kind: type, ok, need: str):
    """An argparse type: a ``kind`` (int or float) for which ``ok(value)``, else argparse's own one-line
    error saying ``need`` (e.g. "a positive integer")."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text} is invalid: must be {need}")
        return value
    parse.__name__ = kind.__name__
    return parse


_POSITIVE_INT = _checked(int, lambda v: v > 0, "a positive integer")
_POSITIVE = _checked(float, lambda v: v > 0, "a positive number")
_NON_NEGATIVE_INT = _checked(int, lambda v: v >= 0, "an integer >= 0")
_FRACTION = _checked(float, lambda v: 0.0 < v <= 1.0, "a number in (0, 1]")


def known_models() -> list[str]:
    """The names ``--model`` accepts (``hdvit_lib.models.list_models()``)."""
    from hdvit_lib.models import list_models

    return list_models()


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """The arguments that name a (cached) training run: ``train`` and ``analyze`` share them, so
    ``analyze`` with the same ones finds the model ``train`` made."""
    p.add_argument("--model", required=True, help="a name from hdvit_lib.models.list_models(), e.g. vit_ti")
    p.add_argument("--preset", default="smoke", choices=NAMES)
    p.add_argument("--dataset", default=None, choices=DATASETS, help="(default: the preset's)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the data module's)")
    p.add_argument("--download", action="store_true", default=None,
                   help="download the dataset if it is missing (default: the preset's; paper: yes)")
    p.add_argument("--fraction", type=_FRACTION, default=1.0, help="fraction of the training set to use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=_POSITIVE_INT, default=None, help="override the preset's epochs")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=None,
                   help="override the preset's (global) batch size")
    p.add_argument("--lr", type=_POSITIVE, default=None, help="override the preset's learning rate")
    p.add_argument("--device-augment", type=_NON_NEGATIVE_INT, default=None, metavar="G",
                   help="augment on the training device, RandAugment drawn per group of G images "
                        "(paper preset: 8; 1: per image as in the paper; 0: per image on the CPU)")
    p.add_argument("--cache", default=None, help="cache directory (default: $HDVIT_CACHE or ~/.cache/hdvit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hdvit_lib", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    t = sub.add_parser("train", help="train a model (or load it from the cache) and print where it is")
    _add_run_args(t)
    t.add_argument("--compile", action="store_true", help="torch.compile the model")

    a = sub.add_parser("analyze", help="run an analysis on a cached (or freshly trained) model; write JSON")
    a.add_argument("analysis", choices=ANALYSES, help="hessian: top-k eigenvalues per mini-batch (Fig. 4); "
                   "landscape: 2-D loss surface (Fig. 1a)")
    _add_run_args(a)
    a.add_argument("--snapshot", default="final", help="init | warmup | final | an epoch number")
    a.add_argument("--out", required=True, help="where rank 0 writes the result (JSON)")
    a.add_argument("--method", default="lanczos", choices=("lanczos", "power"), help="hessian eigen-solver")
    a.add_argument("--n-batches", type=_POSITIVE_INT, default=None, help="hessian mini-batches (default: preset's)")
    a.add_argument("--k", type=_POSITIVE_INT, default=None, help="hessian eigenvalues per mini-batch (default: preset's)")
    a.add_argument("--tol", type=_POSITIVE, default=1e-3, help="hessian solver tolerance")
    a.add_argument("--max-iter", type=_POSITIVE_INT, default=100,
                   help="hessian solver iterations (Lanczos: Krylov dimension)")
    a.add_argument("--points", type=_POSITIVE_INT, default=None,
                   help="landscape grid points per axis (default: preset's)")
    a.add_argument("--span", type=_POSITIVE, default=1.0, help="landscape grid: [-span, span] per axis")

    c = sub.add_parser("cache", help="list the cached runs")
    c.add_argument("--cache", default=None, help="cache directory (default: $HDVIT_CACHE or ~/.cache/hdvit)")
    p.commands = {"train": t, "analyze": a, "cache": c}  # for errors with the sub-command's usage line
    return p


def _overrides(args: argparse.Namespace) -> dict:
    pairs = (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
             ("device_augment", args.device_augment))
    return {k: v for k, v in pairs if v is not None}


def _train(args: argparse.Namespace) -> None:
    from hdvit_lib import distributed
    from hdvit_lib.train.cache import load_or_train

    overrides = _overrides(args)
    device = distributed.setup()
    try:
        trained = load_or_train(
            args.model, preset=args.preset, dataset=args.dataset, data_fraction=args.fraction, seed=args.seed,
            cache_dir=args.cache, train_overrides=overrides, progress=not args.no_progress,
            data_root=args.data_root, download=args.download, device=device, compile=args.compile,
        )
        if distributed.is_main():
            h = trained.history
            print(f"cache: {trained.dir}")
            print(f"final test accuracy: {h.final('test_acc'):.4f} (epoch {h.epochs_done}, "
                  f"train loss {h.final('train_loss'):.4f})")
    finally:
        distributed.teardown()


def _analysis_batches(dataset, n: int, batch_size: int, seed: int) -> list:
    """``n`` mini-batches of ``batch_size`` un-augmented training images, in a seeded random order
    (the same on every rank)."""
    import torch
    from torch.utils.data import DataLoader

    if n * batch_size > len(dataset):
        raise ValueError(f"{n} mini-batches of {batch_size} need {n * batch_size} images; the set has {len(dataset)}")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    return [b for b, _ in zip(loader, range(n), strict=False)]


def _analyze(args: argparse.Namespace) -> None:
    import torch

    from hdvit_lib import distributed
    from hdvit_lib.data import get_loaders
    from hdvit_lib.presets import get_preset
    from hdvit_lib.train.cache import load_or_train

    own_group = not torch.distributed.is_initialized()  # a group the caller set up stays
    device = distributed.setup()
    try:
        trained = load_or_train(
            args.model, preset=args.preset, dataset=args.dataset, data_fraction=args.fraction, seed=args.seed,
            cache_dir=args.cache, train_overrides=_overrides(args), progress=not args.no_progress,
            data_root=args.data_root, download=args.download, device=device,
        )
        snap = int(args.snapshot) if args.snapshot.isdigit() else args.snapshot
        if snap != "final":
            trained.model.load_state_dict(trained.snapshot(snap))
        cfg = dict(trained.config["train"], dataset=trained.config["dataset"])
        cfg |= {k: v for k, v in get_preset(args.preset).items() if k.startswith(("hessian_", "landscape_"))}
        data = get_loaders(cfg, root=args.data_root, download=args.download, seed=args.seed,
                           data_fraction=args.fraction).train_eval.dataset
        name = f"{args.model}@{args.snapshot}"
        if args.analysis == "hessian":
            from hdvit_lib.analysis.hessian import spectrum

            n = args.n_batches or int(cfg["hessian_batches"])
            batches = _analysis_batches(data, n, int(cfg["hessian_batch_size"]), args.seed)
            result = spectrum(trained.model, batches, n, k=args.k or int(cfg["hessian_k"]), method=args.method,
                              tol=args.tol, max_iter=args.max_iter, weight_decay=float(cfg["weight_decay"]),
                              seed=args.seed, name=name, progress=not args.no_progress)
        else:
            from hdvit_lib.analysis.landscape import loss_landscape

            bs = int(cfg["batch_size"])
            n_images = min(int(cfg["landscape_images"]), len(data))
            batches = _analysis_batches(data, max(n_images // bs, 1), min(bs, n_images), args.seed)
            result = loss_landscape(trained.model, batches, n_points=args.points or int(cfg["landscape_points"]),
                                    span=args.span, seed=args.seed, weight_decay=float(cfg["weight_decay"]),
                                    name=name, progress=not args.no_progress,
                                    amp=bool(cfg.get("landscape_amp", False)))
        if distributed.is_main():
            result.save(args.out)
            print(f"{args.analysis}: {args.out} ({result.seconds:.1f} s on {distributed.world_size()} process(es))")
        distributed.barrier()
    finally:
        if own_group:
            distributed.teardown()


def _list_cache(args: argparse.Namespace) -> None:
    from hdvit_lib.train.cache import default_cache_dir

    root = Path(args.cache) if args.cache else default_cache_dir()
    print(f"cache: {root}")
    for done in sorted(root.glob("*/done.json")):
        cfg = json.loads((done.parent / "config.json").read_text())
        info = json.loads(done.read_text())
        print(f"{done.parent.name}: model={cfg['model']} dataset={cfg['dataset']} epochs={info['epochs']} "
              f"test_acc={info['test_acc']:.4f}")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot check alone: the model name, the snapshot; one ``error:`` line, exit 2."""
    if getattr(args, "model", None) is not None:
        models = known_models()
        if args.model not in models:
            parser.error(f"argument --model: unknown model {args.model!r}; choose one of {', '.join(models)}")
    snap = getattr(args, "snapshot", "final")
    if not (snap in ("init", "warmup", "final") or snap.isdigit()):
        parser.error(f"argument --snapshot: {snap!r} is not init, warmup, final or an epoch number")


def main(argv: Sequence[str] | None = None) -> None:
    """Run a command. A user's mistake (unknown model, ``--epochs 0``, ...) prints argparse's
    usage and one ``error:`` line naming the valid values, and exits with status 2; a download
    that fails prints one ``error:`` line saying where to put the files, and exits with 1."""
    from hdvit_lib.errors import DownloadError

    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser.commands[args.command], args)
    try:
        {"train": _train, "analyze": _analyze, "cache": _list_cache}[args.command](args)
    except DownloadError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")

