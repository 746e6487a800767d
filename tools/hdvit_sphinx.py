"""Local Sphinx extension for the book (copied to the staging tree's ``_ext/`` by build_book.py).

sphinx-thebe 0.3 adds its inline configuration script (``const THEBE_JS_URL = ...``) twice to
every page under Sphinx 7.4 (once with filename None, once with ""), and the second copy is a SyntaxError in the browser console
("Identifier 'THEBE_JS_URL' has already been declared"). Drop exact duplicate scripts per page.
"""

from __future__ import annotations

from typing import Any


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


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
