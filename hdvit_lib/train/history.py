"""The per-epoch record of a training run (JSON round-trip, like every result)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hdvit_lib.analysis.result import Result


@dataclass
class History(Result):
    """Per-epoch curves of one run; ``test_*`` are NaN when no test loader was given.

    epoch: 1-based epoch numbers. train_loss / train_acc: sample-weighted means over the epoch
    (the training loss includes label smoothing or the mixup soft targets). test_loss: plain
    cross-entropy. time: wall seconds of the epoch (training + evaluation). lr: the learning
    rate of the epoch's last step. step_loss: the loss of every optimisation step, in order.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.epoch)

    def final(self, key: str = "test_acc") -> float:
        """The last value of curve ``key`` (NaN before the first epoch)."""
        values = getattr(self, key)
        return float(values[-1]) if values else float("nan")
