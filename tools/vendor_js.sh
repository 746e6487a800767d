#!/usr/bin/env bash
# Vendor the JavaScript the site needs so that it loads nothing from a CDN:
#   RequireJS + @jupyter-widgets/html-manager (embed-amd.js, for ipywidgets' embedded state)
#   MathJax 3 (es5/tex-chtml.js with its CHTML fonts and TeX extensions).
# _vendor/hdvit-widgets.js (committed) adapts embed-amd.js to this layout and to MathJax 3.
# Fetched once from the npm registry with `npm pack` (too large to commit: ~8 MB); cached in _vendor/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/_vendor"
HTML_MANAGER="@jupyter-widgets/html-manager@1.0.15"
MATHJAX="mathjax@3.2.2"
REQUIREJS="requirejs@2.3.8"
STAMP="$DEST/.stamp-$(echo "$HTML_MANAGER $MATHJAX $REQUIREJS" | md5sum | cut -c1-12)"
[ -f "$STAMP" ] && exit 0
command -v npm >/dev/null || { echo "vendor_js: npm is needed (apt-get install npm)" >&2; exit 1; }
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "$HTML_MANAGER" "$MATHJAX" "$REQUIREJS" >/dev/null)
for t in "$TMP"/*.tgz; do mkdir -p "${t%.tgz}" && tar xzf "$t" -C "${t%.tgz}"; done
find "$DEST" -mindepth 1 ! -name .gitignore ! -name README.md ! -name 'hdvit-*.js' -exec rm -rf {} +
HM="$(ls -d "$TMP"/jupyter-widgets-html-manager-*/package)"
MJ="$(ls -d "$TMP"/mathjax-*/package)"
RJ="$(ls -d "$TMP"/requirejs-*/package)"
cp "$RJ/require.js" "$DEST/require.min.js"
# embed-amd.js plus the font files it references relative to itself
cp "$HM/dist/embed-amd.js" "$DEST/"
find "$HM/dist" -maxdepth 1 -regex '.*\.\(woff2?\|ttf\|eot\|svg\)' -exec cp {} "$DEST/" \;
mkdir -p "$DEST/mathjax/es5/output/chtml/fonts" "$DEST/mathjax/es5/input/tex"
cp "$MJ/es5/tex-chtml.js" "$DEST/mathjax/es5/"
cp -r "$MJ/es5/output/chtml/fonts/woff-v2" "$DEST/mathjax/es5/output/chtml/fonts/"
cp -r "$MJ/es5/input/tex/extensions" "$DEST/mathjax/es5/input/tex/"
cp -r "$MJ/es5/ui" "$MJ/es5/a11y" "$DEST/mathjax/es5/" 2>/dev/null || true
cp "$MJ/LICENSE" "$DEST/mathjax/LICENSE"
touch "$STAMP"
echo "vendor_js: $(du -sh "$DEST" | cut -f1) in $DEST"
