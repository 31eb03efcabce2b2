# Set-up is part of every target: a fresh machine with Python >= 3.11 needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench fuzz clean

# The install also compiles the optional accelerator runtime/_fastzmq.pyx (needs a C compiler;
# without one the install goes on and the transport uses pure pyzmq calls).
$(STAMP): pyproject.toml setup.py runtime/_fastzmq.pyx
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the main job (an embedded cluster demo for now)
demo: $(STAMP)
	$(VENV)/bin/shoal demo

## test: ruff, mypy (strict), the whole pytest suite, then the transport's tests without the accelerator
test: $(STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider
	SHOAL_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_zmqcalls.py tests/test_transport.py

lint: $(STAMP)
	$(VENV)/bin/ruff check actors router runtime tests bench examples
	$(VENV)/bin/ruff format --check actors router runtime tests bench examples
	$(VENV)/bin/mypy

## bench: every benchmark, each beside its floor
bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build runtime/_fastzmq.c runtime/*.so
