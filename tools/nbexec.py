"""Execute and check chapter notebooks (used by ``tools/build_book.py`` and ``tests/``).

Run serially (papermill under xdist collided on kernel ports here), with ``preset`` injected as a
papermill parameter and ``HDVIT_PLOTLY_RENDERER=hdvit_book`` so that plotly figures survive myst-nb
(which drops plotly's default ``plotly_mimetype`` output) and need no CDN.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "hdvit"  # registered by `make venv` (ipykernel install --sys-prefix --name hdvit)

_DEF = re.compile(r"^\s*(async\s+def|def|class)\s+\w+", re.MULTILINE)
#: The book's config: ``repository.url`` is where the library is installed from on Colab.
CONFIG = ROOT / "_config.yml"
#: The first code cell of every chapter (and of tools/chapter_template.ipynb); ``{source}`` is
#: ``git+<repository.url>``. Colab cannot read _config.yml before the library is installed, so the
#: cell holds the URL literally and ``lint_notebook`` checks that it is this text, byte for byte.
INSTALL_CELL = """\
# Colab only: install hdvit_lib (locally, `make venv` has installed it already).
# To keep trained models across sessions, put the model cache on Google Drive first:
#   from google.colab import drive; drive.mount("/content/drive")
#   import os; os.environ["HDVIT_CACHE"] = "/content/drive/MyDrive/hdvit-cache"
# A disconnected session then resumes training from its last finished epoch.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet",
                           "{source}"])"""


def install_source(config: Path = CONFIG) -> str:
    """What pip installs on Colab: ``git+`` the book's ``repository.url`` (``_config.yml``)."""
    import yaml

    return "git+" + yaml.safe_load(config.read_text())["repository"]["url"]


def install_cell(config: Path = CONFIG) -> str:
    """The Colab install cell, made from the one place that says where the library comes from."""
    return INSTALL_CELL.format(source=install_source(config))


def sync_install_cells(paths: list[Path], config: Path = CONFIG) -> list[Path]:
    """Rewrite the first code cell of each notebook in ``paths`` to :func:`install_cell` (after a
    change of ``repository.url``); returns the notebooks changed."""
    cell, changed = install_cell(config), []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        if first.source != cell:
            first.source = cell
            nbformat.write(nb, path)
            changed.append(path)
    return changed



def chapter_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks, in reading order (file name order)."""
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def kernel_name() -> str:
    """The venv's own kernel ``hdvit`` if registered, else ``python3`` (the running Python)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


MAX_LINE = 88  # code lines longer than this scroll sideways on the site


def lint_notebook(path: Path) -> list[str]:
    """House rules for a committed chapter; returns the problems found (empty when clean).

    A ``parameters``-tagged code cell assigning ``preset``; no outputs or execution counts;
    no ``def``/``class`` (shared code belongs in ``hdvit_lib``); the first code cell installs
    ``hdvit_lib`` on Colab only.
    """
    nb = nbformat.read(path, as_version=4)
    problems: list[str] = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not params:
        problems.append("no code cell tagged 'parameters'")
    elif not any(re.search(r"^\s*preset\s*=", c.source, re.MULTILINE) for c in params):
        problems.append("the 'parameters' cell does not assign `preset`")
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        if c.get("outputs") or c.get("execution_count") is not None:
            problems.append(f"cell {i} has committed outputs (clear them)")
        if _DEF.search(c.source):
            problems.append(f"cell {i} defines a function or class (move it to hdvit_lib)")
    if code and not ("google.colab" in code[0].source and "pip" in code[0].source):
        problems.append("the first code cell is not the Colab install cell (see tools/chapter_template.ipynb)")
    elif code and code[0].source != install_cell():
        problems.append(f"the Colab install cell differs from the one _config.yml's repository.url makes "
                        f"({install_source()}): run `python tools/nbexec.py --sync-install-cells`")
    for i, c in enumerate(nb.cells):
        long = [n for n, line in enumerate(c.source.splitlines(), 1) if c.cell_type == "code" and len(line) > MAX_LINE]
        if long:
            problems.append(f"cell {i} has lines over {MAX_LINE} characters (line {long[0]}): they scroll on the site")
    return problems


def teaching_problems(path: Path) -> list[str]:
    """What a chapter must show to teach (STYLE.md): an equation (``$$`` in a markdown cell), a
    visible computation checked against the library (an ``assert`` in a code cell), and a link to
    its row of the protocol page (``protocol-...``). Empty when the chapter has all three."""
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    problems = []
    if "$$" not in md:
        problems.append("no displayed equation ($$ ... $$) in a markdown cell")
    if not re.search(r"^\s*(assert\b|torch\.testing\.assert_close|np\.testing\.assert)", code, re.MULTILINE):
        problems.append("no visible computation checked against the library (an assert in a code cell)")
    if "protocol-" not in md:
        problems.append("no link to its row of the protocol page ({ref}`protocol-...`)")
    return problems


def execute(
    path: Path,
    out: Path,
    preset: str = "smoke",
    timeout: int | None = 600,
    cwd: Path | None = None,
    parameters: dict | None = None,
) -> float:
    """Execute ``path`` with papermill into ``out`` (``preset`` and ``parameters`` injected); returns
    seconds taken.

    Raises ``papermill.PapermillExecutionError`` naming the failing cell.
    """
    import papermill as pm

    os.environ.setdefault("HDVIT_PLOTLY_RENDERER", "hdvit_book")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(path),
        str(out),
        parameters={"preset": preset, **(parameters or {})},
        kernel_name=kernel_name(),
        cwd=str(cwd or path.parent),
        execution_timeout=timeout,
        progress_bar=False,
        log_output=False,
    )
    return time.perf_counter() - t0


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--sync-install-cells"]:
        sys.exit("usage: python tools/nbexec.py --sync-install-cells")
    targets = [*chapter_notebooks(), ROOT / "tools" / "chapter_template.ipynb",
               ROOT / "tests" / "fixtures" / "notebooks" / "00_fixture.ipynb"]
    for p in sync_install_cells(targets):
        print(f"rewrote the install cell of {p.relative_to(ROOT)}")
