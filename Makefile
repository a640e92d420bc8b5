# The two commands of the README:
#   make demo   set up (once) and segment the bundled sample CT with the shipped model
#   make test   set up (once) and run the test suite
# Setup pins the CPU build of torch (requirements/ci-constraints.txt); set
# CONSTRAINTS= to let pip choose torch yourself (for a CUDA build).

PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= requirements/ci-constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.glandseg-installed
SAMPLE := Resources/sample/phantom_head_ct.nii.gz
DEMO_OUT ?= out/demo

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/ci-constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/glandseg segment $(SAMPLE) -o $(DEMO_OUT) --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" Testing

test-all: $(STAMP)
	$(PY) -m pytest -q Testing

bench: $(STAMP)
	$(PY) Testing/benchmark.py

clean:
	rm -rf $(VENV) out
