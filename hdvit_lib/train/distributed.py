"""Multi-process training (DistributedDataParallel) under ``torchrun``.

``torchrun --nproc_per_node=N -m hdvit_lib train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then joins the process group (nccl on CUDA, gloo on CPU).
:func:`train` notices the group, wraps the model in DDP, gives each rank ``batch_size / N``
samples of every global batch through a ``DistributedSampler`` and lets only rank 0 write.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def setup() -> torch.device:
    """Join the process group torchrun describes (if any); return this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _like(loader: DataLoader, dataset, batch_size: int, sampler=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


def shard_train_loader(loader: DataLoader, global_batch: int, seed: int) -> DataLoader:
    """The same data split across ranks: a ``DistributedSampler`` and ``global_batch / N`` per rank.

    Rank ``r`` of ``N`` reads samples ``r, r + N, ...`` of the (seeded, per-epoch shuffled)
    order, so the union over ranks of their ``k``-th batches is the ``k``-th global batch.
    """
    n = world_size()
    if global_batch % n:
        raise ValueError(f"batch_size={global_batch} does not split across {n} processes; use a multiple of {n}")
    shuffle = isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(loader.dataset, num_replicas=n, rank=rank(), shuffle=shuffle, seed=seed)
    return _like(loader, loader.dataset, global_batch // n, sampler)


def shard_eval_loader(loader: DataLoader) -> DataLoader:
    """Rank ``r`` evaluates samples ``r, r + N, ...`` (no padding: sums over ranks are exact)."""
    n = world_size()
    return _like(loader, Subset(loader.dataset, range(rank(), len(loader.dataset), n)), loader.batch_size or 1)
