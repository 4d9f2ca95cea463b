# `make demo` and `make test` each create or refresh the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgevid-installed
TORCH_PIN := torch==2.13.0
# Reference projects for the weight-import parity tests (never runtime dependencies): pytorchvideo with --no-deps
# (its model code needs only fvcore and iopath, from the `refs` extra in pyproject.toml), and torchvision's wheel,
# downloaded without installing it (its compiled core does not load on this CPU torch, and installing it would
# replace torch; the tests read its pure-Python model files).
PYTORCHVIDEO_REF := pytorchvideo==0.1.5
TORCHVISION_REF := torchvision==0.29.1

.PHONY: venv test lint demo demo-quick clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev,refs]"
	$(PY) -m pip install -q --no-deps $(PYTORCHVIDEO_REF)
	$(PY) -m pip download -q --no-deps --only-binary=:all: -d $(VENV)/refs $(TORCHVISION_REF)
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Two test processes (pytest-xdist), one test file each at a time (module fixtures are built once): most tests are
# single-threaded Python (exports, file I/O): 6.6 minutes instead of 12.7 in one process on cpu-2c-amd-epyc-avx2.
test: venv lint
	$(PY) -m pytest -q -n 2 --dist loadfile

demo: venv
	$(VENV)/bin/edgevid demo --out demo_out

demo-quick: venv
	$(VENV)/bin/edgevid demo --quick --out demo_out/quick

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
