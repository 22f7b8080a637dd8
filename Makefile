# Two entry points: `make demo` and `make test`. Each builds .venv itself.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint venv clean browser notebooks

$(BIN)/scalelab: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first (lies on disk here); an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/scalelab

demo: venv
	$(BIN)/scalelab run experiments/quickstart.py
	$(BIN)/scalelab report results/quickstart

test: venv browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

# the unit tier alone (no Ray, no subprocesses, no test marked slow): under 90 s on 2 cores
test-fast: venv
	$(BIN)/pytest -q -m "not integration and not slow"

# The report's browser test opens report.html in headless Chromium (Debian package `chromium`):
# installed here when apt-get is there and we are root; elsewhere the test skips, naming it.
browser:
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || [ "$$(id -u)" != 0 ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the report's browser test will skip"

# JupyterLab on the analysis notebooks (they open results/quickstart after `make demo`)
notebooks: venv
	$(BIN)/pip install -q -e '.[notebooks]'
	$(BIN)/jupyter lab analysis/notebooks

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) results
