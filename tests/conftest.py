"""Shared test doubles (imported by the test modules: ``from conftest import FakeTrained``)."""

from __future__ import annotations

from torch import nn


class FakeTrained:
    """The part of a zoo entry (``hdvit_lib.zoo.Trained``) the chapter glue uses: ``.model``,
    ``.snapshots()`` (epochs) and ``.snapshot(tag)``. ``snaps`` maps epochs or tags to state dicts;
    a tag missing from it resolves as the zoo does: ``init`` -> 0, ``warmup`` -> 1, ``final`` -> the
    last epoch."""

    def __init__(self, model: nn.Module, snaps: dict) -> None:
        self.model, self._snaps = model, snaps

    def snapshots(self) -> list[int]:
        return sorted(k for k in self._snaps if isinstance(k, int))

    def snapshot(self, tag):
        if tag in self._snaps:
            return self._snaps[tag]
        epochs = self.snapshots()
        return self._snaps[{"init": 0, "warmup": 1, "final": epochs[-1] if epochs else None}.get(tag, tag)]
