# Two commands on a fresh machine: `make demo` (install + tour) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_STAMP  := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck unit bench browser clean llama dist image

NATIVE := src/slmkit/runtime/native.py

# llama-cpp-python is compiled here for this CPU (-march=native minus AMX, whose kernels die of
# SIGILL in VMs that report AMX without granting it), once per CPU: the wheel is kept under
# ~/.cache/slmkit/llama-wheels/ keyed by CPU, flags and compiler (never pip's wheel cache, which
# would hand over a wheel built on another CPU). The probe then decodes a tiny model in a child
# process; if that child dies, llama.cpp is rebuilt with portable flags, or the install stops
# with one error line.
$(RUN_STAMP): pyproject.toml $(NATIVE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python $(NATIVE) install
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	$(BIN)/python $(NATIVE) check
	touch $@

# Rebuild llama.cpp for this CPU (if its probe fails) and probe it again.
llama: $(RUN_STAMP)
	$(BIN)/python $(NATIVE) install
	$(BIN)/python $(NATIVE) check

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
	$(BIN)/python -m pytest -m "not real_model"
	$(BIN)/python -m pytest -m real_model

test: lint typecheck unit

bench: $(RUN_STAMP)
	$(BIN)/python benchmarks/decode_speed.py
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/system_prompt.py
	$(BIN)/python benchmarks/prefix_reuse.py

# The release: sdist and wheel in dist/, checked as the package index would check them.
dist: $(TEST_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check dist/*

# The image `slm deploy kuberay` names (slmkit:VERSION, also tagged latest): needs podman or
# docker, which this project's CI machines lack (see Containerfile).
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
ENGINE ?= $(shell command -v podman || command -v docker)
image: dist
	@test -n "$(ENGINE)" || { echo "error: no container engine (podman or docker) found" >&2; exit 1; }
	$(ENGINE) build -f Containerfile -t slmkit:$(VERSION) -t slmkit:latest .

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
