"""The claim check every chapter ends with: the paper's claim, this run's numbers, the verdict.

A chapter's experiments module computes a :class:`Claim` from its results (never typed in);
the notebook displays it. ``holds`` is None where the run cannot decide (e.g. NaN numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
