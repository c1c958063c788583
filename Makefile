# Two commands from a fresh clone: `make test` and `make demo`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp changes whenever a package's metadata or the shared version does, so an edit to any
# pyproject.toml reinstalls, and an unchanged tree skips the install (idempotent and quick).
STAMP := $(VENV)/.installed-$(shell cat VERSION packages/*/pyproject.toml packages/version_hook.py constraints.txt 2>/dev/null | cksum | cut -d' ' -f1)
PACKAGES := packages/idrcell-builder packages/chadavit-model packages/chadavit-bench
PYTEST_ARGS ?=

.PHONY: test lint demo bench bench-gpu clean install version bump-version

install: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned, so that no other requirement pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt \
		$(foreach p,$(PACKAGES),-e "$(p)[test]")
	@rm -f $(VENV)/.installed-*
	@touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	@set -e; for script in benchmarks/bench_*.py; do \
		echo "== $$script"; $(BIN)/python $$script; done

# What only a GPU can measure (bf16 model benchmark, 50 DINO steps); without CUDA it says so, exit 0.
bench-gpu: install
	$(BIN)/python benchmarks/gpu_bench.py

version:
	@cat VERSION

# One line to bump the version of all three packages: `make bump-version V=0.2.0`.
bump-version:
	@test -n "$(V)" || { echo "usage: make bump-version V=X.Y.Z"; exit 2; }
	@echo "$(V)" > VERSION && echo "version is now $(V); the next make reinstalls the packages"

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache demo-out signal-out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +
