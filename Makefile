# Two commands on a fresh machine: `make demo` (install + tour) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck unit bench browser clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# llama-cpp-python builds from source once (~5-10 min); pip's wheel cache makes reruns fast.
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test,torch,ray]'
	touch $@

demo: $(RUN_STAMP)
	$(BIN)/slm demo

# ruff's C901/PLR0915 bound function size; import-linter checks the layers (pyproject.toml).
lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The chat page is tested in Debian's chromium (Playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Model-free tier first (fake backend, seconds), then the real-model tier.
unit: $(TEST_STAMP) browser
	$(BIN)/python -m pytest -m "not real_model and not benchmark"
	$(BIN)/python -m pytest -m "real_model and not benchmark"

test: lint typecheck unit

bench: $(RUN_STAMP)
	$(BIN)/python benchmarks/decode_speed.py
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/system_prompt.py
	$(BIN)/python benchmarks/prefix_reuse.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
