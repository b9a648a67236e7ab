# tunnelproof: two promises on a fresh clone.
#   make demo   the main job (all local, no key needed)
#   make test   the test suite (creates .venv and installs what it needs on first use)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint bench chaos soak system-deps venv node-deps clean help

help:
	@echo "make demo | make test | make lint | make bench | make chaos"

# The venv is rebuilt only when pyproject.toml changes; otherwise this is a fast no-op.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The browser client's type checker (TypeScript, dev only: the module itself has no build
# step). `npm ci` runs only when node_modules is missing or older than the lock file; without
# npm it says so (`make lint` then fails at tsc, the test that runs tsc skips with the reason).
node-deps:
	@if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error; \
	  else echo "node-deps: npm is missing (make system-deps installs it as root)" >&2; fi; \
	fi

# Debian packages the tests use (redis-server, nftables, iproute2, chromium, espeak-ng,
# nodejs). Installs only what is
# missing, and only as root; otherwise the tests that need them skip and say why.
system-deps:
	@bash scripts/ensure-system-deps.sh

demo: $(STAMP)
	$(BIN)/tunnelproof demo

# Two workers, one per core of the 2-core machine the README promises: most e2e tests wait
# on scaled timings (an answer's pacing, a tunnel, a backoff) rather than compute, so two
# overlap well. --dist loadfile keeps each file on one worker (module-scoped browsers, and
# each file's tests in their written order). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps node-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP) node-deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	node_modules/.bin/tsc -p tsconfig.json --checkJs --strict --noEmit

bench: $(STAMP) system-deps
	$(BIN)/tunnelproof bench

chaos: $(STAMP) system-deps
	rc=0; $(BIN)/python -m tunnelproof.testing.chaos --sessions 120 --out bench/results/chaos.json --chart bench/results/chaos.png $(CHAOS_ARGS) || rc=1; $(BIN)/python -m pytest -m slow tests $(PYTEST_ARGS) || rc=1; exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis node_modules
