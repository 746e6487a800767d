"""The reader's site: table of contents, an offline build, and headless Chromium over every page.

- Always: `_toc.yml` lists every chapter and only files that exist.
- Always (needs `make vendor`): the fixture chapter builds into a site with no CDN script.
- With Debian's chromium + chromedriver (`make check-site` installs them): every page of the fixture
  site, and of `_build/html` when it exists (`make book`), is loaded from a localhost server with
  the browser's own networking off: no severe console error, every plotly figure drawn, every plotly
  slider changes its figure when moved, MathJax typeset, widgets rendered; a screenshot of each
  page goes to `_build/screenshots/<site>/`.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SHOTS = BUILD / "screenshots"
FIXTURES = ROOT / "tests" / "fixtures"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CHROME_FLAGS = [  # what works on this kind of machine, whose network is closed
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--window-size=1280,1600",
]


def _toc_files(node: object) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("file", "root"):
                out.append(str(v))
            out += _toc_files(v)
    elif isinstance(node, list):
        for v in node:
            out += _toc_files(v)
    return out


def test_toc_lists_every_chapter_and_only_existing_files() -> None:
    listed = _toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    missing = [f for f in listed if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
    chapters = sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    unlisted = [c for c in chapters if c not in listed]
    assert not unlisted, f"add these chapters to _toc.yml (in reading order): {unlisted}"
    assert listed[0] == "book/intro" and "book/references" in listed


def test_references_cited_exist() -> None:
    """Every {cite}`key` in book/ and notebooks/ has an entry in book/references.bib."""
    bib = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))
    texts = [p.read_text() for p in [*(ROOT / "book").glob("*.md"), *(ROOT / "notebooks").glob("*.ipynb")]]
    cited = {k.strip() for t in texts for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", t)
             for k in group.split(",")}
    assert cited, "no citations found"
    assert cited <= bib, f"cited but not in references.bib: {sorted(cited - bib)}"


# ---------------------------------------------------------------- the built site (static checks)
@pytest.fixture(scope="module")
def fixture_site() -> Path:
    """Build the one-chapter fixture site with the book's own _config.yml (about 20 s)."""
    if not (ROOT / "_vendor" / "embed-amd.js").exists():
        pytest.skip("_vendor/ is empty: run `make vendor` (npm registry)")
    out = BUILD / "fixture"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_book.py"), "--notebooks", str(FIXTURES / "notebooks"),
         "--toc", str(FIXTURES / "_toc.yml"), "--out", str(out)],
        check=True, timeout=400,
    )
    return out / "html"


def _pages(site: Path) -> list[Path]:
    skip = {"genindex.html", "search.html", "index.html"}
    return sorted(p for p in site.rglob("*.html")
                  if p.name not in skip and not {"_static", "_sources", "_images"} & set(p.parts))


def _static_problems(site: Path) -> list[str]:
    problems = []
    for page in site.rglob("*.html"):
        html = page.read_text(errors="replace")
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", html):
            if re.search(r"""(?:src|href)=["']?(?:https?:)?//""", tag) and (
                tag.startswith("<script") or "stylesheet" in tag or "preload" in tag
            ):
                problems.append(f"{page.relative_to(site)}: loads from the network: {tag[:160]}")
    return problems


@pytest.mark.timeout(600)
def test_fixture_site_is_offline(fixture_site: Path) -> None:
    page = (fixture_site / "notebooks" / "00_fixture.html").read_text()
    assert page.count('class="plotly-graph-div"') == 1
    assert "application/vnd.jupyter.widget-state+json" in page
    assert "_static/_vendor/embed-amd.js" in page and "_static/_vendor/mathjax/es5/tex-chtml.js" in page
    assert "colab.research.google.com/github/hdvit/hdvit/blob/main/notebooks/00_fixture.ipynb" in page
    for f in ("require.min.js", "embed-amd.js", "mathjax/es5/tex-chtml.js", "mathjax/es5/output/chtml/fonts/woff-v2"):
        assert (fixture_site / "_static" / "_vendor" / f).exists(), f
    assert _static_problems(fixture_site) == []


@pytest.mark.skipif(not (BUILD / "html" / "index.html").exists(), reason="no _build/html: run `make book`")
def test_book_site_is_offline() -> None:
    assert _static_problems(BUILD / "html") == []


# ---------------------------------------------------------------- headless Chromium
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Debian chromium + chromium-driver (`make check-site`)"
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # Chromium asks for it; a 404 would be a console error
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={BUILD / 'chromium-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    shutil.rmtree(BUILD / "chromium-profile", ignore_errors=True)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# JavaScript run in the page: the state of plotly figures, math and widgets.
_STATE_JS = """
const figs = [...document.querySelectorAll('.plotly-graph-div')].map(gd => ({
  id: gd.id,
  drawn: !!gd.querySelector('svg.main-svg') && !!gd._fullData && gd._fullData.length > 0 &&
         gd.querySelectorAll('.trace, .hm, .contour, .imagelayer image, .gl-container canvas, .table-control-view .cell-text').length > 0,
  sliders: (gd.layout && gd.layout.sliders) ? gd.layout.sliders.length : 0,
}));
return {
  figs: figs,
  math: document.querySelectorAll('div.math, span.math').length,
  mjx: document.querySelectorAll('mjx-container').length,
  widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  widgetsShown: document.querySelectorAll('.jupyter-widgets, .widget-slider, .lm-Widget').length,
  wideCode: [...document.querySelectorAll('div.cell_input div.highlight pre')]
    .filter(p => p.scrollWidth > p.clientWidth + 1).length,
  height: document.documentElement.scrollHeight,
};
"""
_SIGNATURE_JS = """
const gd = document.getElementById(arguments[0]);
const plot = [...gd.querySelectorAll('.cartesianlayer, .polarlayer, .ternarylayer, .gl-container')]
  .map(e => e.innerHTML).join('');
const s = JSON.stringify(gd.data.map(t => [t.visible, t.x, t.y, t.z])) + plot;
let h = 0; for (let i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) | 0; }
return [h, gd.layout.sliders.map(sl => sl.active)];
"""


def _wait(driver: object, js: str, timeout: float = 20.0) -> object:
    end = time.time() + timeout
    while True:
        state = driver.execute_script(js)
        if time.time() > end or (all(f["drawn"] for f in state["figs"]) and state["mjx"] >= min(state["math"], 1)
                                 and state["widgetsShown"] >= min(state["widgetViews"], 1)):
            return state
        time.sleep(0.5)


def _check_site(driver: object, site: Path, name: str) -> list[str]:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    out_dir = SHOTS / name
    out_dir.mkdir(parents=True, exist_ok=True)
    server, base = _serve(site)
    problems: list[str] = []
    try:
        for page in _pages(site):
            rel = page.relative_to(site).as_posix()
            driver.get_log("browser")  # drop what earlier pages left
            driver.set_window_size(1280, 1600)
            driver.get(f"{base}/{rel}")
            state = _wait(driver, "return (function(){" + _STATE_JS + "})()")
            for f in state["figs"]:
                if not f["drawn"]:
                    problems.append(f"{rel}: plotly figure {f['id']} was not drawn")
                if f["sliders"] and f["drawn"]:
                    before = driver.execute_script(_SIGNATURE_JS, f["id"])
                    gd = driver.find_element(By.ID, f["id"])
                    for rail in gd.find_elements(By.CSS_SELECTOR, ".slider-rail-touch-rect"):
                        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", rail)
                        width = rail.size["width"]
                        ActionChains(driver).move_to_element_with_offset(rail, int(width / 2) - 4, 0).click().perform()
                    time.sleep(1.0)
                    after = driver.execute_script(_SIGNATURE_JS, f["id"])
                    if after[1] == before[1]:
                        problems.append(f"{rel}: slider of {f['id']} did not move ({before[1]})")
                    elif after[0] == before[0]:
                        problems.append(f"{rel}: moving the slider of {f['id']} did not change the figure")
            if state["math"] and not state["mjx"]:
                problems.append(f"{rel}: {state['math']} math nodes, none typeset by MathJax")
            if state["wideCode"]:
                problems.append(f"{rel}: {state['wideCode']} code cells scroll sideways in a 1280-pixel window")
            if state["widgetViews"] and not state["widgetsShown"]:
                problems.append(f"{rel}: {state['widgetViews']} widget views, none rendered")
            for entry in driver.get_log("browser"):
                if entry["level"] == "SEVERE":
                    problems.append(f"{rel}: console: {entry['message'][:300]}")
            driver.execute_script("window.scrollTo(0, 0)")
            driver.set_window_size(1280, min(max(int(state["height"]), 800), 5000))
            time.sleep(0.3)
            driver.save_screenshot(str(out_dir / (rel.replace("/", "__").removesuffix(".html") + ".png")))
    finally:
        server.shutdown()
    return problems


@needs_browser
@pytest.mark.site
@pytest.mark.timeout(600)
def test_fixture_site_in_browser(fixture_site: Path, browser: object) -> None:
    problems = _check_site(browser, fixture_site, "fixture")
    assert not problems, "\n".join(problems)


@needs_browser
@pytest.mark.site
@pytest.mark.timeout(900)
@pytest.mark.skipif(not (BUILD / "html" / "index.html").exists(), reason="no _build/html: run `make book`")
def test_book_site_in_browser(browser: object) -> None:
    problems = _check_site(browser, BUILD / "html", "book")
    assert not problems, "\n".join(problems)
