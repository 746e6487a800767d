"""The claim check every chapter ends with: the paper's claim, this run's numbers, the verdict.

A chapter's experiments module computes a :class:`Claim` from its results (never typed in);
the notebook displays it. ``holds`` is None where the run cannot decide (e.g. NaN numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

#: The words of each outcome of :func:`verdict`, for every chapter.
HOLDS, DOES_NOT, IN_PART, WHERE_DECIDED, UNDECIDED = (
    "holds in this run",
    "does not hold in this run",
    "holds only in part in this run",
    "holds where this run could decide, undecided elsewhere",
    "undecided in this run",
)


def verdict(parts: Sequence[bool | None]) -> tuple[bool | None, str]:
    """The one verdict rule of the book: a claim's parts (sub-claims (a), (b), ...) are each True,
    False or None -- undecided, because it could not be measured in this run or its effect lies
    within the run's noise (each chapter states its noise rule beside the number). Then:

    - every part True -> ``(True, HOLDS)``;
    - every part False -> ``(False, DOES_NOT)``;
    - some True and some False -> ``(False, IN_PART)``: a claim holds only as a whole;
    - the decided parts all True, the others undecided -> ``(None, WHERE_DECIDED)``;
    - the decided parts all False, the others undecided -> ``(False, DOES_NOT)``;
    - no part decided (or no part) -> ``(None, UNDECIDED)``.
    """
    known = [bool(p) for p in parts if p is not None]
    if not known:
        return None, UNDECIDED
    if all(known):
        return (True, HOLDS) if len(known) == len(parts) else (None, WHERE_DECIDED)
    if not any(known):
        return False, DOES_NOT
    return False, IN_PART


def _fmt(v: float) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass
class Claim:
    """paper: the paper's claim in words. measured: this run's numbers by name.
    holds: True / False / None (undecided). verdict: the verdict in words.
    preset: the preset of the run (shown in the summary)."""

    paper: str
    measured: dict[str, float]
    holds: bool | None
    verdict: str
    preset: str = field(default="")

    def _measured_text(self) -> str:
        return ", ".join(f"{k} = {_fmt(v)}" for k, v in self.measured.items())

    def __str__(self) -> str:
        preset = f" (preset {self.preset})" if self.preset else ""
        return f"Paper: {self.paper}\nThis run{preset}: {self._measured_text()}\nVerdict: {self.verdict}"

    def _repr_markdown_(self) -> str:
        preset = f" (preset `{self.preset}`)" if self.preset else ""
        return (
            f"**Paper:** {self.paper}\n\n**This run{preset}:** {self._measured_text()}\n\n"
            f"**Verdict:** {self.verdict}"
        )


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent images: ``sqrt(p(1-p)/n)``."""
    if n <= 0 or not math.isfinite(p):
        return float("nan")
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def difference_part(diff: float, se: float, what: str) -> tuple[bool | None, str]:
    """``holds`` and words for "``diff`` > 0" given its standard error: noise within 2 SE."""
    if not math.isfinite(diff):
        return None, f"{what}: not measured"
    if abs(diff) <= 2 * se:
        return None, f"{what}: {diff:+.3f}, within noise (2 SE = {2 * se:.3f})"
    return diff > 0, f"{what}: {diff:+.3f} ({'beyond' if diff > 0 else 'against, beyond'} 2 SE = {2 * se:.3f})"
