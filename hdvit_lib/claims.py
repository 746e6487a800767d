"""The claim check every chapter ends with: the paper's claim, this run's numbers, the verdict.

A chapter's experiments module computes a :class:`Claim` from its results (never typed in);
the notebook displays it. ``holds`` is None where the run cannot decide (e.g. NaN numbers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    #: standard errors of some ``measured`` values (same keys), shown as ``value ± SE``
    uncertainty: dict[str, float] = field(default_factory=dict)
    #: how many runs (seeds) the numbers are means of (:func:`over_seeds`); 1: one run
    seeds: int = field(default=1)

    def _measured_text(self) -> str:
        def one(k: str, v: float) -> str:
            se = self.uncertainty.get(k)
            return f"{k} = {_fmt(v)}" + (f" ± {_fmt(se)}" if se is not None and math.isfinite(se) else "")

        return ", ".join(one(k, v) for k, v in self.measured.items())

    def _run_words(self, preset: str) -> str:
        parts = [w for w in (preset, f"mean ± SE over {self.seeds} seeds" if self.seeds > 1 else "") if w]
        return f"This run ({', '.join(parts)})" if parts else "This run"

    def __str__(self) -> str:
        words = self._run_words(f"preset {self.preset}" if self.preset else "")
        return f"Paper: {self.paper}\n{words}: {self._measured_text()}\nVerdict: {self.verdict}"

    def _repr_markdown_(self) -> str:
        words = self._run_words(f"preset `{self.preset}`" if self.preset else "")
        return f"**Paper:** {self.paper}\n\n**{words}:** {self._measured_text()}\n\n**Verdict:** {self.verdict}"

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        """The markdown, with the claim's fields as output metadata (``hdvit_claim``): what
        ``tools/recorded_runs.py`` reads back to average a chapter's claim over seeds."""
        return {"text/markdown": self._repr_markdown_()}, {"hdvit_claim": self.to_dict()}

    def to_dict(self) -> dict:
        """JSON-safe fields (NaN -> None)."""
        def num(v: float) -> float | bool | None:
            return v if isinstance(v, bool) else (float(v) if math.isfinite(float(v)) else None)

        return {"paper": self.paper, "measured": {k: num(v) for k, v in self.measured.items()},
                "holds": self.holds, "verdict": self.verdict, "preset": self.preset,
                "uncertainty": {k: num(v) for k, v in self.uncertainty.items()}, "seeds": self.seeds}

    @classmethod
    def from_dict(cls, d: dict) -> Claim:
        """Inverse of :meth:`to_dict` (None -> NaN)."""
        def num(v: float | bool | None) -> float | bool:
            return float("nan") if v is None else v

        return cls(d["paper"], {k: num(v) for k, v in d["measured"].items()}, d["holds"], d["verdict"],
                   d.get("preset", ""), {k: num(v) for k, v in d.get("uncertainty", {}).items()},
                   int(d.get("seeds", 1)))


def outcome(c: Claim) -> str:
    """A claim's verdict in a few words: "holds", "in part", "does not", "where decided" (the decided
    parts hold, the others are undecided) or "undecided"."""
    if c.holds is None:
        return "where decided" if c.verdict.startswith(WHERE_DECIDED.split(" this run")[0]) else "undecided"
    if c.holds:
        return "holds"
    return "in part" if c.verdict.startswith(IN_PART.split(" this run")[0]) else "does not"


def over_seeds(claims: Sequence[Claim]) -> Claim:
    """The same claim check from runs that differ only in their seed, as one claim (Sec. "Seeds" of
    ``book/protocol.md``): each number is the mean over the seeds that measured it, with the standard
    error over seeds ``s / sqrt(n)`` (``s`` the sample standard deviation over the ``n`` seeds); the
    verdict tallies the seeds' own verdicts and is

    - holds / does not hold where every seed's verdict is the same (an all-"in part" tally is "holds
      only in part"; all "holds where this run could decide" stays undecided where no seed decided);
    - otherwise ``None``, undecided at this power: the seeds disagree, so one seed's verdict is noise.
    """
    import numpy as np

    if not claims:
        raise ValueError("over_seeds needs the claims of at least one seed")
    first = claims[0]
    if any(c.paper != first.paper for c in claims):
        raise ValueError("over_seeds: the claims are not the same claim check (their paper texts differ)")
    if len(claims) == 1:
        return first
    keys = list(dict.fromkeys(k for c in claims for k in c.measured))
    measured: dict[str, float] = {}
    se: dict[str, float] = {}
    for k in keys:
        vals = np.array([float(c.measured[k]) for c in claims if k in c.measured], dtype=float)
        vals = vals[np.isfinite(vals)]
        measured[k] = float(vals.mean()) if vals.size else float("nan")
        se[k] = (0.0 if np.ptp(vals) == 0 else float(vals.std(ddof=1) / np.sqrt(vals.size))) if vals.size > 1 \
            else float("nan")  # identical values: exactly 0 (not float rounding of their mean)
    words = [outcome(c) for c in claims]
    tally = ", ".join(f"{w} in {words.count(w)}" for w in
                      ("holds", "in part", "does not", "where decided", "undecided") if w in words)
    n = len(claims)
    if len(set(words)) == 1 and words[0] != "undecided":
        holds, head = {"holds": (True, HOLDS), "in part": (False, IN_PART), "does not": (False, DOES_NOT),
                       "where decided": (None, WHERE_DECIDED)}[words[0]]
        text = f"{head.replace('this run', f'every one of {n} seeds')}"
    else:
        holds = None
        text = (f"undecided over {n} seeds ({tally} of {n})" if len(set(words)) > 1 else
                f"undecided in every one of {n} seeds")
    return Claim(first.paper, measured, holds, text, first.preset, uncertainty=se, seeds=n)


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


def proportion_se(p: float, n: int) -> float:
    """Standard error of a proportion ``p`` of ``n`` independent items, ``sqrt(p(1-p)/n)``; with
    ``p`` in {0, 1} the rule-of-three bound ``sqrt(0.5 * 0.5 / n)`` is used instead of 0 (one more
    item could change it)."""
    if n <= 0 or not math.isfinite(p):
        return float("nan")
    q = p if 0.0 < p < 1.0 else 0.5
    return math.sqrt(q * (1.0 - q) / n)


def majority_part(p: float, n: int, what: str) -> tuple[bool | None, str]:
    """Is a proportion ``p`` of ``n`` items a majority (> 0.5)? True or False only where it lies beyond
    2 SE (:func:`proportion_se`) from 0.5; else None: undecided at this power."""
    if not math.isfinite(p) or n <= 0:
        return None, f"{what}: not measured"
    se = proportion_se(p, n)
    words = f"{what}: {p:.0%} of {n} (SE {se:.2f})"
    if abs(p - 0.5) <= 2 * se:
        return None, f"{words}, within 2 SE of one half: undecided at this power"
    return p > 0.5, words


def bootstrap_se(values_by_group: Sequence[Sequence[float]], stat, n_boot: int = 500, seed: int = 0) -> float:
    """Standard error of ``stat(all values)`` by resampling whole groups with replacement (e.g. the
    eigenvalues of one mini-batch are a group: they are not independent of each other)."""
    import numpy as np

    groups = [np.asarray(g, dtype=float).ravel() for g in values_by_group if len(g)]
    if len(groups) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    stats = [stat(np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))]))
             for _ in range(n_boot)]
    return float(np.std(stats, ddof=1))


def less_part(a: float, se_a: float, b: float, se_b: float, what: str) -> tuple[bool | None, str]:
    """Is ``a < b``? Decided only where the difference exceeds 2 SE of the difference
    (``sqrt(se_a^2 + se_b^2)``, NaN SEs count as 0); else None (undecided at this power)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return None, f"{what}: not measured"
    se = math.sqrt(sum(x * x for x in (se_a, se_b) if math.isfinite(x)))
    diff = b - a
    if abs(diff) <= 2 * se:
        return None, f"{what}: {a:.3g} vs {b:.3g}, within 2 SE ({2 * se:.2g}): undecided at this power"
    return diff > 0, f"{what}: {a:.3g} vs {b:.3g} (2 SE = {2 * se:.2g})"



def less_than(a: float, b: float) -> bool | None:
    """``a < b`` as a part of a claim, or None (undecided) where either number is NaN (not measured)."""
    return None if (math.isnan(a) or math.isnan(b)) else a < b


def verdict_text(parts: Sequence[bool | None], words: Sequence[str]) -> tuple[bool | None, str]:
    """:func:`verdict` of a claim's ``parts`` and its text: the outcome, then each part's words
    (``(a) ...``, ``(b) ...``) joined by "; ", ending with a period."""
    holds, head = verdict(parts)
    return holds, f"{head}: " + "; ".join(words) + "."


def per_model(summaries: Mapping[str, Mapping[str, float]], quantities: Sequence[str]) -> dict[str, float]:
    """A claim's ``measured`` numbers from per-model summaries (e.g. ``spectrum_summary`` of each
    model's Hessian spectrum): ``"{model}: {quantity}"``, model by model."""
    return {f"{k}: {q}": s[q] for k, s in summaries.items() for q in quantities}


def standard_errors(summaries: Mapping[str, Mapping[str, float]], quantity: str) -> dict[str, float]:
    """The standard error of ``quantity`` per model (each summary's ``"{quantity} SE"``), keyed as
    :func:`per_model` keys the value: a claim's ``uncertainty``."""
    return {f"{k}: {quantity}": s[f"{quantity} SE"] for k, s in summaries.items()}


def summary_less(a: Mapping[str, float], b: Mapping[str, float], quantity: str,
                 what: str | None = None) -> tuple[bool | None, str]:
    """:func:`less_part` of ``quantity`` between two summaries (e.g. two models' ``spectrum_summary``),
    each with its standard error ``"{quantity} SE"``; ``what`` names it in the words (default ``quantity``)."""
    return less_part(a[quantity], a[f"{quantity} SE"], b[quantity], b[f"{quantity} SE"], what or quantity)
