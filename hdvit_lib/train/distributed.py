"""Multi-process training under ``torchrun``: a re-export of :mod:`hdvit_lib.distributed`, which
holds the one implementation (process group, rank helpers, collectives, DDP data sharding)."""

from hdvit_lib.distributed import (
    all_reduce_sum,
    barrier,
    broadcast_object,
    is_distributed,
    is_main,
    rank,
    setup,
    shard_eval_loader,
    shard_train_loader,
    teardown,
    world_size,
)

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "is_distributed",
    "is_main",
    "rank",
    "setup",
    "shard_eval_loader",
    "shard_train_loader",
    "teardown",
    "world_size",
]
