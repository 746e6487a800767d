# hdvit: the two README commands are `make book` and `make test`.
# TORCH_PIN: this machine's local torch build (pip takes it from disk); set TORCH_PIN= to keep
# whatever torch the machine has (e.g. a GPU build), or another pin.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_PIN   ?= torch==2.14.1 torchvision==0.29.1
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.hdvit-stamp
PRESET      ?= smoke
PYTEST_ARGS ?=
# Test workers: one per core (pytest-xdist; each worker's torch on one thread, no oversubscription).
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: venv test test-paper-size book vendor check-site chromium serve clean help

help:
	@echo "make venv | test | test-paper-size | book | check-site | serve | clean   (PRESET=$(PRESET), TORCH_PIN='$(TORCH_PIN)')"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(strip $(TORCH_PIN)),$(PY) -m pip install --quiet $(TORCH_PIN))
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name hdvit --display-name "Python (hdvit)" >/dev/null
	touch $@

test: $(STAMP)
	@bash tools/vendor_js.sh || echo "make vendor failed: the fixture-site tests will skip"
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) --dist worksteal --timeout=600 --durations=15 -m "not paper_size" \
	  $(PYTEST_ARGS) tests

# Every chapter with the gpu/paper presets at paper size, made tiny, on the CPU (tests/test_paper_size.py):
# the crashes a Colab reader would meet after an hour. ~8 min on 2 cores; CI runs it after make test.
test-paper-size: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) --dist worksteal --timeout=900 --durations=10 -m paper_size \
	  $(PYTEST_ARGS) tests

vendor:
	bash tools/vendor_js.sh

book: $(STAMP) vendor
	HDVIT_PLOTLY_RENDERER=hdvit_book $(PY) tools/build_book.py --preset $(PRESET)

# Debian's chromium + chromedriver for the browser test (root on this machine; needs apt).
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

check-site: $(STAMP) chromium
	test -f _build/html/index.html || $(MAKE) book
	HDVIT_SITE_TEST=1 $(PY) -m pytest -q -rs --timeout=900 tests/test_site.py

serve:
	$(PY) -m http.server -d _build/html 8000

clean:
	rm -rf _build
