"""Every chapter notebook: house rules, and a papermill run with the smoke preset (serially).

Also tests the machinery on a fixture chapter (tests/fixtures/notebooks/00_fixture.ipynb), so that
this file tests something before the first chapter lands.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from nbexec import (
    chapter_notebooks,
    execute,
    install_cell,
    lint_notebook,
    sync_install_cells,
    teaching_problems,
)

FIXTURE = ROOT / "tests" / "fixtures" / "notebooks" / "00_fixture.ipynb"
TEMPLATE = ROOT / "tools" / "chapter_template.ipynb"
CHAPTERS = chapter_notebooks()
_NONE = [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks/*.ipynb yet"))]


def _outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and mime == "text/plain":
                found.append(out["text"])
            elif mime in out.get("data", {}):
                found.append(out["data"][mime] if isinstance(out["data"][mime], str) else str(out["data"][mime]))
    return found


@pytest.mark.parametrize("path", CHAPTERS + [TEMPLATE, FIXTURE], ids=lambda p: p.name)
def test_house_rules(path: Path) -> None:
    """Parameters cell with `preset`, no committed outputs, no def/class, Colab install cell first."""
    assert lint_notebook(path) == []


def test_lint_catches_each_rule(tmp_path: Path) -> None:
    nb = nbformat.read(FIXTURE, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.metadata["tags"] = []
    nb.cells.append(nbformat.v4.new_code_cell("def helper():\n    return 1"))
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="x")]
    nb.cells.insert(0, nbformat.v4.new_code_cell("import torch"))
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    problems = " | ".join(lint_notebook(bad))
    for needle in ("tagged 'parameters'", "committed outputs", "function or class", "Colab install"):
        assert needle in problems


@pytest.mark.notebook
@pytest.mark.timeout(600)  # a cold cache under load: chapter 01 took over 300 s
@pytest.mark.parametrize("path", CHAPTERS or _NONE, ids=lambda p: p.name if p else "none")
def test_chapter_runs(path: Path, tmp_path: Path) -> None:
    """The chapter runs end to end with preset="smoke" (as in `make book`)."""
    execute(path, tmp_path / path.name, preset="smoke")


@pytest.mark.notebook
@pytest.mark.timeout(600)  # a cold cache under load: chapter 01 took over 300 s
def test_fixture_chapter_executes_for_the_site(tmp_path: Path) -> None:
    """The machinery: preset injected, plotly inlined without CDN, widget state stored."""
    out = tmp_path / FIXTURE.name
    execute(FIXTURE, out, preset="smoke")
    nb = nbformat.read(out, as_version=4)
    text = "".join(_outputs(nb, "text/plain"))
    assert "preset 'smoke'" in text and "peaks at bin 4" in text
    html = _outputs(nb, "text/html")
    figs = [h for h in html if "plotly-graph-div" in h]
    assert len(figs) == 1 and "Plotly.newPlot" in figs[0]
    assert sum("plotly.js v" in h for h in html) == 1  # plotly.js inlined once per page
    assert not any(re.search(r"<script[^>]*src=.https?:", h) for h in html)  # nothing from a CDN
    assert _outputs(nb, "application/vnd.jupyter.widget-view+json")
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'preset = "smoke"' in injected[0].source


@pytest.mark.notebook
@pytest.mark.timeout(600)  # a cold cache under load: chapter 01 took over 300 s
def test_failing_notebook_fails_the_build(tmp_path: Path) -> None:
    from build_book import run_notebooks

    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('deliberate failure')"))
    bad = tmp_path / "99_bad.ipynb"
    nbformat.write(nb, bad)
    with pytest.raises(SystemExit, match="99_bad.ipynb"):
        run_notebooks([bad], tmp_path / "src", "smoke", execute_them=True)


@pytest.mark.parametrize("path", CHAPTERS or _NONE, ids=lambda p: p.name if p else "none")
def test_chapter_teaches(path: Path) -> None:
    """Each chapter shows its equation, a computation checked against the library, and links its
    protocol row (tools/nbexec.py: teaching_problems)."""
    assert teaching_problems(path) == []


def test_teaching_rules_catch_a_chapter_that_only_calls(tmp_path: Path) -> None:
    nb = nbformat.read(FIXTURE, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type == "code"]  # no prose: no equation, no link
    nb.cells.append(nbformat.v4.new_code_cell("x = 1  " + "#" * 100))
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    problems = " | ".join(teaching_problems(bad))
    for needle in ("equation", "protocol page"):
        assert needle in problems
    assert any("scroll on the site" in p for p in lint_notebook(bad))


def test_install_cell_comes_from_the_book_config(tmp_path: Path) -> None:
    """One place says where Colab installs the library from: _config.yml's repository.url. Every
    chapter's first cell is the cell made from it (test_house_rules, byte for byte); a changed URL
    is one edit plus `python tools/nbexec.py --sync-install-cells`."""
    import yaml

    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert f'"git+{url}"' in install_cell()
    template = nbformat.read(TEMPLATE, as_version=4)
    assert next(c for c in template.cells if c.cell_type == "code").source == install_cell()
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://example.org/fork/hdvit\n")
    nb = tmp_path / "ch.ipynb"
    nb.write_bytes(FIXTURE.read_bytes())
    assert sync_install_cells([nb], config) == [nb] and sync_install_cells([nb], config) == []
    first = next(c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code")
    assert first.source == install_cell(config) and '"git+https://example.org/fork/hdvit"' in first.source
    assert any("install cell differs" in p for p in lint_notebook(nb))  # not the book's URL
