# dpshare: one entry point per task. Every target creates the virtualenv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= smoke
ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install install-peers test test-random test-slow reproduce report audit bench lint format clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## The peer synthesizers (method=mst|aim|dpctgan|patectgan; docs/peers.md). smartnoise-synth pins
## opacus<0.15 and, through smartnoise-sql, pandas<3: both clash with ours, so the two packages go
## in with --no-deps after the extra (their other dependencies), and Opacus 0.14 goes into a side
## directory that only dpctgan's child process puts on its path.
PEERS_OPACUS := $(VENV)/dpshare-peers/opacus-0.14
install-peers: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,peers]"
	$(PY) -m pip install -q --no-deps smartnoise-synth==1.0.8 smartnoise-sql==1.0.10
	$(PY) -m pip install -q --no-deps --upgrade --target $(PEERS_OPACUS) opacus==0.14.0

## Fast test suite (CPU, no network, a few minutes). CI runs this.
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

## The fast suite in a random order (pytest-randomly; it prints its seed: replay an order with
## make test-random ARGS=--randomly-seed=N). Verdicts must not depend on test order.
test-random: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -p randomly $(ARGS)

## Slow tests: multiruns and larger end-to-end runs.
test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

## The main job, every paper experiment and the report; writes results/. SCALE=smoke|cpu|paper,
## ARGS=extra Hydra overrides for every run (e.g. ARGS=trainer=gpu)
reproduce: $(STAMP)
	$(PY) -m dpshare.reproduce scale=$(SCALE) $(ARGS)

## Rebuild every table and figure in results/ from the run records under outputs/
report: $(STAMP)
	$(PY) -m dpshare.report

## Canary audit of DP-SGD: empirical epsilon lower bound beside the accountant's epsilon.
audit: $(STAMP)
	$(PY) -m dpshare.audit

## Benchmarks (not part of the test suite): DP step vs non-private step per Opacus mode, and
## end-to-end smoke runs per method; writes benchmarks/results/. See benchmarks/README.md.
bench: $(STAMP)
	$(PY) benchmarks/bench_dp_step.py
	$(PY) benchmarks/bench_end_to_end.py

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format src tests
	$(PY) -m ruff check --fix src tests

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
