"""One colour per block kind, in every figure of the book (block strips, stage tables, the
per-block markers of the representation chapters)."""

from __future__ import annotations

KIND_COLORS: dict[str, str] = {
    "embed": "#7f7f7f", "conv": "#1f77b4", "msa": "#d62728", "mlp": "#ff7f0e", "pool": "#2ca02c", "head": "#17becf",
}
