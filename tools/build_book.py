"""Build the site: execute every chapter with papermill, then Jupyter Book 1.x with execution off.

    python tools/build_book.py [--preset smoke] [--only 01_loss] [--no-exec]
                               [--notebooks DIR --toc FILE --out DIR]   (the test fixture site)

Staging tree ``<out>/src/``: copies of ``_config.yml``, ``_toc.yml``, ``book/``, the library's
``.py`` files (``hdvit_lib/``, which chapters show with ``literalinclude``), the executed
notebooks (``notebooks/``) and the vendored JavaScript (``_site_extra/_static/_vendor/``, copied to the
site's ``_static/_vendor/`` through ``html_extra_path``; Sphinx resolves relative script paths
against ``_static/``). ``jupyter-book config sphinx`` writes its
``conf.py``; ``sphinx-build -W --keep-going`` renders ``<out>/html`` (default ``_build/html``).
A failing notebook fails the build (nothing is rendered).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbexec import ROOT, chapter_notebooks, execute

VENDOR = ROOT / "_vendor"
VENDOR_FILES = ("require.min.js", "hdvit-widgets.js", "embed-amd.js", "mathjax/es5/tex-chtml.js")


def _sources_only(folder: str, names: list[str]) -> list[str]:
    """``copytree``'s ignore: keep folders and ``.py`` files, drop the rest (caches, data)."""
    return [n for n in names
            if n == "__pycache__" or not (n.endswith(".py") or (Path(folder) / n).is_dir())]


def stage(src: Path, notebooks: Path, toc: Path) -> list[Path]:
    """Fresh staging tree with config, prose and vendored JS; returns the notebooks to execute."""
    missing = [f for f in VENDOR_FILES if not (VENDOR / f).exists()]
    if missing:
        raise SystemExit(f"_vendor/ lacks {', '.join(missing)}: run `make vendor` first")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    shutil.copy2(ROOT / "_config.yml", src / "_config.yml")
    shutil.copy2(toc, src / "_toc.yml")
    shutil.copytree(ROOT / "book", src / "book")
    # the library's sources, for the chapters' ``literalinclude`` of ../hdvit_lib/...
    shutil.copytree(ROOT / "hdvit_lib", src / "hdvit_lib", ignore=_sources_only)
    (src / "_ext").mkdir()
    shutil.copy2(ROOT / "tools" / "hdvit_sphinx.py", src / "_ext" / "hdvit_sphinx.py")
    shutil.copytree(VENDOR, src / "_site_extra" / "_static" / "_vendor", ignore=shutil.ignore_patterns(".*", "README.md"))
    return chapter_notebooks(notebooks)


def run_notebooks(
    nbs: list[Path], src: Path, preset: str, execute_them: bool, only: str | None = None
) -> None:
    """Execute each notebook serially into the staging tree; exit 1 naming the failures.

    Notebooks not selected by ``only`` (or all, without ``execute_them``) are copied unexecuted.
    """
    failed: list[str] = []
    for nb in nbs:
        out = src / "notebooks" / nb.name
        if not execute_them or (only and only not in nb.name):
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, out)
            continue
        print(f"[book] executing {nb.name} (preset={preset}) ...", flush=True)
        try:
            secs = execute(nb, out, preset=preset, timeout=600 if preset == "smoke" else None)  # cpu cells train for minutes
        except Exception as err:  # noqa: BLE001 (a dead kernel is not a PapermillExecutionError)
            failed.append(nb.name)
            print(f"[book] FAILED {nb.name}: {str(err).strip()[-2000:]}", flush=True)
            continue
        # keep the source's kernelspec so the downloadable copy opens anywhere
        src_meta = nbformat.read(nb, as_version=4).metadata
        done = nbformat.read(out, as_version=4)
        if "kernelspec" in src_meta:
            done.metadata["kernelspec"] = src_meta["kernelspec"]
        nbformat.write(done, out)
        print(f"[book] {nb.name}: {secs:.1f} s", flush=True)
    if failed:
        raise SystemExit(f"[book] {len(failed)} notebook(s) failed: {', '.join(failed)}")


def sphinx(src: Path, html: Path, strict: bool) -> None:
    """Jupyter Book 1.x's Sphinx configuration over the staging tree, rendered into ``html``."""
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "jupyter-book"), "config", "sphinx", str(src)], check=True)
    cmd = [str(bindir / "sphinx-build"), "-b", "html", "-q", "-E", "-d", str(src.parent / "doctrees"), str(src), str(html)]
    if strict:
        cmd += ["-W", "--keep-going"]
    print("[book] " + " ".join(cmd), flush=True)
    # `jupyter-book config sphinx` does not put local_extensions on the path; do it here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src / "_ext"), os.environ.get("PYTHONPATH")]))}
    subprocess.run(cmd, check=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke", help="papermill parameter `preset` (default smoke)")
    ap.add_argument("--only", help="execute only notebooks whose name contains this")
    ap.add_argument("--no-exec", action="store_true", help="copy notebooks unexecuted (layout checks)")
    ap.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="chapter folder")
    ap.add_argument("--toc", type=Path, default=ROOT / "_toc.yml", help="table of contents")
    ap.add_argument("--out", type=Path, default=ROOT / "_build", help="build folder (src/, html/)")
    args = ap.parse_args()
    src, html = args.out / "src", args.out / "html"
    t0 = time.perf_counter()
    nbs = stage(src, args.notebooks, args.toc)
    run_notebooks(nbs, src, args.preset, not args.no_exec, args.only)
    t1 = time.perf_counter()
    sphinx(src, html, strict=not args.no_strict)
    t2 = time.perf_counter()
    print(f"[book] notebooks {t1 - t0:.1f} s, sphinx {t2 - t1:.1f} s, total {t2 - t0:.1f} s -> {html}")


if __name__ == "__main__":
    main()
