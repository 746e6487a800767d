"""Tests for hdvit_lib.distributed: two Gloo processes against the one-process result."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hdvit_lib import distributed as D

N = 11  # odd, so the two ranks get different numbers of items


def item_fn(i: int) -> dict:
    """A per-item 'analysis': deterministic from the item, of varying size."""
    g = torch.Generator().manual_seed(i)
    return {"i": i, "eig": torch.randn(1 + i % 3, generator=g).tolist()}


def tensor_fn(i: int) -> torch.Tensor:
    return torch.arange(3, dtype=torch.float64) * i + i**2


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert D.init_distributed() is True
    assert D.init_distributed() is True  # idempotent
    res = {"rank_world": D.rank_world(), "main": D.is_main()}
    items = list(range(N))
    for mode in D.MODES:
        mine = D.shard(items, mode)
        res[f"mine_{mode}"] = mine
        res[f"objs_{mode}"] = D.gather_shards([item_fn(i) for i in mine], N, mode)
        res[f"tens_{mode}"] = D.gather_shards(torch.stack([tensor_fn(i) for i in mine]), N, mode)
    res["map"] = D.map_sharded(item_fn, items)
    res["ranks"] = D.gather(torch.full((rank + 1, 2), float(rank)))  # uneven dim 0
    res["scalar"] = D.gather(torch.tensor(rank * 10))
    torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_two_gloo_ranks_match_one_process(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    expected_objs = [item_fn(i) for i in range(N)]
    expected_tens = torch.stack([tensor_fn(i) for i in range(N)])
    mine = {}
    for rank in range(world):
        res = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert res["rank_world"] == (rank, world) and res["main"] == (rank == 0)
        for mode in D.MODES:
            assert res[f"objs_{mode}"] == expected_objs
            assert torch.equal(res[f"tens_{mode}"], expected_tens)
            mine[mode, rank] = res[f"mine_{mode}"]
        assert res["map"] == expected_objs
        assert [t.tolist() for t in res["ranks"]] == [[[0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
        assert [int(t) for t in res["scalar"]] == [0, 10]
    assert mine["contiguous", 0] == list(range(6)) and mine["contiguous", 1] == list(range(6, 11))
    assert mine["strided", 0] == list(range(0, 11, 2)) and mine["strided", 1] == list(range(1, 11, 2))


def test_single_process_is_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert D.init_distributed() is False
    assert D.rank_world() == (0, 1) and D.is_main()
    items = list("abcdefg")
    assert D.shard(items) == items
    assert D.map_sharded(str.upper, items) == list("ABCDEFG")
    t = torch.arange(5.0)
    assert torch.equal(D.gather_shards(t, 5, "strided"), t)


@pytest.mark.parametrize("n,world", [(0, 3), (1, 4), (10, 3), (12, 4), (7, 7)])
@pytest.mark.parametrize("mode", D.MODES)
def test_shards_partition_the_items(n, world, mode):
    parts = [D.shard_indices(n, mode, r, world) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    if mode == "contiguous":
        assert [i for p in parts for i in p] == list(range(n))


def test_bad_arguments():
    with pytest.raises(ValueError, match="contiguous"):
        D.shard_indices(4, "random", 0, 2)
    with pytest.raises(ValueError, match="outside"):
        D.shard_indices(4, "strided", 2, 2)
