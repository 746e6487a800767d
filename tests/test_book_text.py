"""The book's prose against the repository: the intro's figure map names every figure of the paper
once per chapter that covers it, every chapter it names exists, and every chapter has a figure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN_FIGURES = set(range(1, 13))  # the paper (arXiv v4) has Figs. 1-12 in its main text
NO_FIGURE = {"13_critical_analysis", "14_claims_over_training_and_scale"}  # the book's own chapters


def figure_map() -> list[tuple[str, str]]:
    """(figure label, chapter notebook stem) for every row of the intro's figure table."""
    rows = []
    for line in (ROOT / "book" / "intro.md").read_text().splitlines():
        m = re.match(r"\|\s*Fig\. ([0-9A-Z.]+?)( \(appendix\))?\s*\|.*<\.\./notebooks/([^>]+)>`\s*\|\s*$", line)
        if m:
            rows.append((m.group(1), m.group(3)))
    return rows


def test_every_paper_figure_has_a_chapter_and_every_chapter_a_figure() -> None:
    rows = figure_map()
    main = {int(f) for f, _ in rows if f.isdigit()}
    assert main == MAIN_FIGURES, f"figures without a row: {sorted(MAIN_FIGURES - main)}"
    assert len([f for f, _ in rows if f.isdigit()]) == len(MAIN_FIGURES), "a main figure is listed twice"
    chapters = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    named = {c for _, c in rows}
    assert named <= chapters, f"rows name missing chapters: {sorted(named - chapters)}"
    assert chapters - NO_FIGURE <= named, f"chapters without a figure: {sorted(chapters - NO_FIGURE - named)}"


def test_a_chapter_number_is_its_main_figure_number() -> None:
    """Chapter NN shows the paper's Fig. NN (the numbering the reader finds in the paper)."""
    for fig, chapter in figure_map():
        if fig.isdigit():
            assert int(chapter[:2]) == int(fig), (fig, chapter)


def test_readme_figure_table_names_real_functions_and_chapters() -> None:
    """Every `module.function` in the README's figure -> chapter -> code table exists in
    hdvit_lib.analysis / hdvit_lib.plots / hdvit_lib.data, and every chapter it names exists."""
    import importlib

    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Figure → chapter → code"):text.index("## Layout")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 12
    chapters = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    for row in rows:
        _, _, chapter, analysis, plot, _ = row.split("|")
        stems = re.findall(r"`(\d\d)(?:_[a-z_]+)?`", chapter)
        assert stems and all(any(c.startswith(s) for c in chapters) for s in stems), row
        for mod, fn in re.findall(r"`([a-z_.]+)\.([A-Za-z_]+)`", analysis + plot):
            found = False
            for base in ("hdvit_lib.analysis.", "hdvit_lib.plots.", "hdvit_lib.data.", "hdvit_lib."):
                try:
                    found = hasattr(importlib.import_module(base + mod), fn)
                except ModuleNotFoundError:
                    continue
                if found:
                    break
            assert found, f"{mod}.{fn} in: {row}"
