"""Local Sphinx extension for the book (copied to the staging tree's ``_ext/`` by build_book.py).

sphinx-thebe 0.3 adds its inline configuration script (``const THEBE_JS_URL = ...``) twice to
every page under Sphinx 7.4 (once with filename None, once with ""), and the second copy is a SyntaxError in the browser console
("Identifier 'THEBE_JS_URL' has already been declared"). Drop exact duplicate scripts per page.

The chapters' code lines are at most 88 characters (a house rule, ``tools/nbexec.py``); at the
theme's code size only ~77 fit the article column of a 1280-pixel window beside both sidebars, so
code cells scrolled sideways. ``_static/hdvit.css`` sets the size of code cells' input so that 88
fit; the browser test (``tests/test_site.py``) checks that no input cell scrolls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CSS = """/* hdvit: 88-character code lines fit the article column (tools/hdvit_sphinx.py) */
div.cell_input div.highlight pre { font-size: 12px; line-height: 1.45; }
"""


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    kept = []
    for js in scripts:
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


def _write_css(app: Any, exc: Exception | None) -> None:
    if exc is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        (static / "hdvit.css").write_text(CSS)


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.add_css_file("hdvit.css")
    app.connect("build-finished", _write_css)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
