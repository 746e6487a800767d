"""The AlterNet build-up rule as a search over MSA placements (Park & Kim 2022, Sec. 4, Fig. 11-12).

The paper states the rule in three lines (Sec. 4):

1. *Alternately replace Conv blocks with MSA blocks from the end of a baseline CNN model.*
2. *If the added MSA block does not improve predictive performance, replace a Conv block
   located at the end of an earlier stage with an MSA block.*
3. *Use more heads and higher hidden dimensions for MSA blocks in late stages.*

Rule 3 is the model's business (``hdvit_lib.models``); rules 1-2 are a greedy search over
placements ``msa_per_stage = (m_1, ..., m_S)`` (MSAs per stage, counted from the stage's end),
which :func:`build_up` runs against any ``evaluate(placement) -> metric``.

Where the text is ambiguous, and what this module does (the ``restart`` argument picks):

- *Is a rejected MSA kept?* No. "Replace a Conv block ... of an earlier stage" is read as
  reverting the MSA that did not help and trying the earlier stage instead (the state only
  ever changes on an accepted candidate): a greedy hill climb.
- *After an MSA is accepted in an earlier stage, where does the next one go?* The paper does
  not say. ``restart="last"`` (default) tries the last stage first again ("from the end of the
  model"); ``restart="current"`` keeps moving towards the input and never revisits later
  stages (one backward sweep). The CIFAR-100 AlterNet-50, MSAs (0, 1, 1, 2), is reachable by
  both; the paper shows only the accepted steps (Fig. 12a), not the rejected candidates.
- *"Alternately"*: within a stage MSAs replace every other block from its end (the official
  code builds a stage of ``n`` blocks with ``k`` MSAs as ``C..C [C M] * k``), so a stage holds at
  most ``n // 2`` MSAs (``capacity``). A full stage is skipped, as if it had not improved.
- *"Improve"*: strictly better than the current best by more than ``min_delta`` (default 0);
  ties are rejected. The paper uses validation accuracy; any scalar works
  (``higher_is_better=False`` for a loss). A NaN metric never improves.
- *When to stop*: when a whole round (every stage that has room) brings no improvement, when
  ``max_msas`` MSAs are placed, or after ``max_evals`` evaluations.

Every candidate is recorded (placement, metric, accepted, cost, round); with ``cache`` (a dict
or a directory) a rerun reads finished candidates instead of evaluating them again.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdvit_lib.analysis.result import Result

RESTARTS = ("last", "current")

# Park & Kim (2022), Fig. 12a, CIFAR-100 top-1 accuracy (%) along the build-up of AlterNet-50,
# read from the authors' figure: ResNet-50, +1, +2, +3 MSAs, AlterNet-50 (0, 1, 1, 2).
PAPER_CIFAR100_BUILDUP: dict[str, Any] = {
    "n_msas": [0, 1, 2, 3, 4],
    "accuracy": [82.48, 83.45, 83.66, 83.77, 84.02],
    "labels": ["ResNet-50", "+1 MSA", "+2 MSAs", "+3 MSAs", "AlterNet-50"],
    "source": "read from Park & Kim (2022), Fig. 12a (CIFAR-100)",
}


@dataclass
class BuildUpTrace(Result):
    """Every candidate the build-up rule evaluated, in order.

    Per candidate (lists of equal length): ``placements`` (MSAs per stage), ``stages`` (the
    stage, 0-based, that got the new MSA; -1 for the baseline CNN), ``metrics``, ``accepted``,
    ``costs`` (seconds spent evaluating; 0.0 when read from the cache), ``cached``, ``rounds``
    (the step index: 0 for the baseline, ``k`` for the candidates proposing the ``k``-th MSA,
    so ``sum(placement) == round``).
    """

    placements: list[list[int]] = field(default_factory=list)
    stages: list[int] = field(default_factory=list)
    metrics: list[float] = field(default_factory=list)
    accepted: list[bool] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    best_placement: list[int] = field(default_factory=list)
    best_metric: float = float("nan")
    blocks_per_stage: list[int] = field(default_factory=list)
    capacity: list[int] = field(default_factory=list)
    higher_is_better: bool = True
    restart: str = "last"
    stop_reason: str = ""
    seed: int = 0

    @property
    def accepted_path(self) -> list[tuple[list[int], float]]:
        """(placement, metric) of the baseline and every accepted candidate, in order."""
        return [(p, m) for p, m, a in zip(self.placements, self.metrics, self.accepted) if a]


def placement_key(placement: tuple[int, ...] | list[int], seed: int = 0) -> str:
    """The cache key of a placement, e.g. ``"msa_0-1-1-2_seed0"`` (also a file-name stem)."""
    return "msa_" + "-".join(str(int(m)) for m in placement) + f"_seed{int(seed)}"


class _DirCache(MutableMapping):
    """A directory of ``<key>.json`` files, written atomically (one per finished candidate)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def __getitem__(self, key: str) -> dict:
        p = self._path(key)
        if not p.exists():
            raise KeyError(key)
        return json.loads(p.read_text())

    def __setitem__(self, key: str, value: dict) -> None:
        p = self._path(key)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(value))
        tmp.replace(p)

    def __delitem__(self, key: str) -> None:
        self._path(key).unlink()

    def __iter__(self):
        return (p.stem for p in sorted(self.root.glob("*.json")))

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*.json"))


def _better(new: float, best: float, higher_is_better: bool, min_delta: float) -> bool:
    if math.isnan(new):
        return False
    return new > best + min_delta if higher_is_better else new < best - min_delta


def build_up(
    evaluate: Callable[[tuple[int, ...]], float],
    n_stages: int = 4,
    blocks_per_stage: tuple[int, ...] = (3, 4, 6, 4),
    max_msas: int | None = None,
    higher_is_better: bool = True,
    seed: int = 0,
    cache: MutableMapping | str | Path | None = None,
    *,
    capacity: tuple[int, ...] | None = None,
    restart: str = "last",
    min_delta: float = 0.0,
    max_evals: int | None = None,
) -> BuildUpTrace:
    """Run the AlterNet build-up rule (Park & Kim 2022, Sec. 4, Fig. 11-12) as a greedy search.

    State ``m = (m_1, ..., m_S)``, MSAs per stage from the stage's end, starting at the baseline
    CNN ``m = 0``. A round tries ``m + e_s`` for ``s = S, S-1, ..., 1`` (skipping full stages,
    ``m_s = capacity_s``) and accepts the first candidate with
    ``metric(m + e_s) > metric(m) + min_delta`` (``<`` ... ``-`` if lower is better); the next
    round starts again at the last stage (``restart="last"``) or at ``s`` (``"current"``). It
    stops when a round accepts nothing, at ``max_msas`` MSAs, or after ``max_evals`` evaluations.
    See the module docstring for how the paper's wording is read.

    evaluate: maps a placement tuple to a scalar metric (e.g. validation accuracy); see
        :func:`evaluate_placement` for the real one (trains AlterNet).
    blocks_per_stage: blocks per stage of the baseline (AlterNet-50: (3, 4, 6, 4)).
    capacity: MSAs a stage may hold; default ``n // 2`` per stage (alternating layout).
    seed: recorded in the trace and the cache key, so that runs with different seeds do not
        share cached metrics; the search itself has no randomness.
    cache: a dict-like or a directory path; key :func:`placement_key`, value
        ``{"metric": float, "cost": float}``. Finished candidates are read, not re-evaluated.
    """
    if len(blocks_per_stage) != n_stages:
        raise ValueError(f"blocks_per_stage={tuple(blocks_per_stage)} has {len(blocks_per_stage)} "
                         f"entries; n_stages={n_stages} needs {n_stages}")
    if restart not in RESTARTS:
        raise ValueError(f"restart={restart!r}; choose one of {RESTARTS}")
    cap = tuple(int(n) // 2 for n in blocks_per_stage) if capacity is None else tuple(capacity)
    if len(cap) != n_stages or any(not 0 <= c <= n for c, n in zip(cap, blocks_per_stage)):
        raise ValueError(f"capacity={cap} must have {n_stages} entries with "
                         f"0 <= capacity <= blocks_per_stage={tuple(blocks_per_stage)}")
    store: MutableMapping | None = _DirCache(cache) if isinstance(cache, (str, Path)) else cache

    trace = BuildUpTrace(blocks_per_stage=list(blocks_per_stage), capacity=list(cap),
                         higher_is_better=higher_is_better, restart=restart, seed=seed)

    def run(placement: tuple[int, ...], stage: int, rnd: int) -> float:
        key = placement_key(placement, seed)
        if store is not None and key in store:
            entry = store[key]
            metric, cost, hit = float(entry["metric"]), 0.0, True
        else:
            t0 = time.perf_counter()
            metric = float(evaluate(tuple(placement)))
            cost, hit = time.perf_counter() - t0, False
            if store is not None:
                store[key] = {"metric": metric, "cost": cost, "placement": list(placement)}
        trace.placements.append(list(placement))
        trace.stages.append(stage)
        trace.metrics.append(metric)
        trace.accepted.append(False)
        trace.costs.append(cost)
        trace.cached.append(hit)
        trace.rounds.append(rnd)
        return metric

    state = (0,) * n_stages
    best = run(state, -1, 0)
    if not math.isfinite(best):
        raise ValueError(f"the baseline placement {state} scored {best}; it must be finite")
    trace.accepted[-1] = True
    start, rnd = n_stages - 1, 0
    while True:
        if max_msas is not None and sum(state) >= max_msas:
            trace.stop_reason = f"max_msas={max_msas} reached"
            break
        if all(m >= c for m, c in zip(state, cap)):
            trace.stop_reason = "every stage is full"
            break
        rnd += 1
        improved = False
        for s in range(start, -1, -1):
            if state[s] >= cap[s]:
                continue
            if max_evals is not None and len(trace.metrics) >= max_evals:
                break
            cand = state[:s] + (state[s] + 1,) + state[s + 1:]
            metric = run(cand, s, rnd)
            if _better(metric, best, higher_is_better, min_delta):
                trace.accepted[-1] = True
                state, best, improved = cand, metric, True
                start = n_stages - 1 if restart == "last" else s
                break
        if max_evals is not None and len(trace.metrics) >= max_evals and not improved:
            trace.stop_reason = f"max_evals={max_evals} reached"
            break
        if not improved:
            trace.stop_reason = "no stage improved"
            break
    trace.best_placement = list(state)
    trace.best_metric = best
    return trace


def buildup_step(trace: BuildUpTrace) -> tuple[list[int], list[int]]:
    """The first step of the build-up rule (Park & Kim 2022, Sec. 4, Fig. 12a): (baseline
    placement, first accepted candidate, or the first candidate when none was accepted)."""
    if len(trace.placements) < 2:
        raise ValueError("the trace holds only the baseline; run the build-up with max_evals >= 2")
    after = next((p for p, a in zip(trace.placements[1:], trace.accepted[1:]) if a), trace.placements[1])
    return list(trace.placements[0]), list(after)


def _final_metric(run: Any, metric: str) -> float:
    """The last value of ``metric`` in a training run's history (attribute or mapping)."""
    hist = getattr(run, "history", run)
    values = hist[metric] if isinstance(hist, dict) else getattr(hist, metric, None)
    if values is None:
        raise ValueError(f"the training run has no history entry {metric!r}")
    return float(values[-1] if hasattr(values, "__len__") else values)


def evaluate_placement(
    placement: tuple[int, ...],
    preset: str = "smoke",
    *,
    model: str = "alternet50",
    metric: str = "test_acc",
    seed: int = 0,
    **load_or_train_kwargs: Any,
) -> float:
    """Train (or load from the zoo cache) AlterNet with ``msa_per_stage=placement``; return its
    final ``metric`` (default ``history.test_acc[-1]``), for use as ``build_up``'s ``evaluate``:

    ``build_up(functools.partial(evaluate_placement, preset="cpu"))``.

    The paper selects on validation accuracy; the zoo reports the held-out split it trains
    with. Extra keyword arguments go to ``hdvit_lib.zoo.load_or_train``.
    """
    from hdvit_lib.zoo import load_or_train  # lazy: the zoo trains models

    run = load_or_train(model, preset=preset, model_cfg={"msa_per_stage": tuple(placement)},
                        seed=seed, **load_or_train_kwargs)
    return _final_metric(run, metric)
