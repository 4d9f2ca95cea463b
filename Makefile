# `make demo` and `make test` each create or refresh the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgevid-installed
TORCH_PIN := torch==2.13.0

.PHONY: venv test lint demo demo-quick clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/edgevid demo --out demo_out

demo-quick: venv
	$(VENV)/bin/edgevid demo --quick --out demo_out/quick

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
