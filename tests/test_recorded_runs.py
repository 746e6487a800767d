"""tools/recorded_runs.py copies each executed chapter's printed claim checks, nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat

from hdvit_lib.claims import Claim

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("recorded_runs", ROOT / "tools" / "recorded_runs.py")
recorded_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recorded_runs)


def executed(path: Path, title: str, claims: list[Claim]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\ntext"))
    for c in claims:
        cell = nbformat.v4.new_code_cell("claim")
        cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/markdown": c._repr_markdown_(),
                                                                        "text/plain": repr(c)}, execution_count=1)]
        cell.outputs.append(nbformat.v4.new_output("display_data", data={"text/markdown": "a table, not a claim"}))
        nb.cells.append(cell)
    path.write_text(json.dumps(nb))


def test_render_takes_every_claim_of_each_chapter_in_order(tmp_path: Path) -> None:
    early = Claim("an early claim", {"x": 1.0}, None, "undecided", "cpu")
    final = Claim("the paper says A", {"a": 0.25}, True, "holds in this run: 25%", "cpu")
    executed(tmp_path / "01_a.ipynb", "1. First chapter", [early, final])
    executed(tmp_path / "02_b.ipynb", "2. No claim", [])
    (tmp_path / "times.txt").write_text("01_a rc=1 5 s\n01_a rc=0 90 s\n")
    page = recorded_runs.render(tmp_path, "cpu", "a test machine", "2026-01-01", tmp_path / "times.txt")
    assert page.startswith("# Recorded runs: the `cpu` preset")
    assert "## 1. First chapter" in page and "2. No claim" not in page
    assert page.index(early._repr_markdown_()) < page.index(final._repr_markdown_()) and "a table" not in page
    assert "1.5 min" in page and "a test machine" in page and "2026-01-01" in page
    assert "| 1 | an early claim | undecided |" in page and "| 1 | the paper says A | yes |" in page


def test_a_chapters_claims_table_is_copied(tmp_path: Path) -> None:
    """Chapter 14 prints one table of claims (no single verdict): it is copied whole."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# 14. Over training\n\ntext"))
    table = "| claim | holds from (epoch) |\n|---|---|\n| ViT is flatter (Fig. 1) | 5 |"
    cell = nbformat.v4.new_code_cell("table")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": table})]
    nb.cells.append(cell)
    (tmp_path / "14_x.ipynb").write_text(json.dumps(nb))
    page = recorded_runs.render(tmp_path, "cpu", "m", "2026-01-01")
    assert "## 14. Over training" in page and table in page
    assert "| 14 | every claim along training and scale | the table in its section |" in page
