"""Command line: ``python -m hdvit_lib <command>`` for long runs outside the notebooks.

    python -m hdvit_lib train --model vit_ti --dataset synthetic --preset smoke [--epochs N]
    torchrun --nproc_per_node=4 -m hdvit_lib train --model vit_ti --preset paper   # DDP
    python -m hdvit_lib cache                                                       # list cached runs
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from hdvit_lib.presets import NAMES


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hdvit_lib", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    t = sub.add_parser("train", help="train a model (or load it from the cache) and print where it is")
    t.add_argument("--model", required=True, help="a name from hdvit_lib.models.list_models(), e.g. vit_ti")
    t.add_argument("--preset", default="smoke", choices=NAMES)
    t.add_argument("--dataset", default=None, help="synthetic | cifar10 | cifar100 | imagefolder (default: preset's)")
    t.add_argument("--data-root", default=None, help="dataset folder (default: the data module's)")
    t.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    t.add_argument("--fraction", type=float, default=1.0, help="fraction of the training set to use")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    t.add_argument("--batch-size", type=int, default=None, help="override the preset's (global) batch size")
    t.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    t.add_argument("--cache", default=None, help="cache directory (default: $HDVIT_CACHE or ~/.cache/hdvit)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    c = sub.add_parser("cache", help="list the cached runs")
    c.add_argument("--cache", default=None, help="cache directory (default: $HDVIT_CACHE or ~/.cache/hdvit)")
    return p


def _train(args: argparse.Namespace) -> None:
    from hdvit_lib import distributed
    from hdvit_lib.train.cache import load_or_train

    overrides = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}
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


def _list_cache(args: argparse.Namespace) -> None:
    from hdvit_lib.train.cache import default_cache_dir

    root = Path(args.cache) if args.cache else default_cache_dir()
    print(f"cache: {root}")
    for done in sorted(root.glob("*/done.json")):
        cfg = json.loads((done.parent / "config.json").read_text())
        info = json.loads(done.read_text())
        print(f"{done.parent.name}: model={cfg['model']} dataset={cfg['dataset']} epochs={info['epochs']} "
              f"test_acc={info['test_acc']:.4f}")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    {"train": _train, "cache": _list_cache}[args.command](args)
