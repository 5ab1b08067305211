# Every target builds its own virtual environment first, so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pinned Apollo packages the federation tests compose lotgraph with (Node.js; Debian's nodejs if missing).
FEDERATION := tests/federation
NODE_STAMP := $(FEDERATION)/node_modules/.installed

.PHONY: run test bench lint format clean schema

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(FEDERATION)/package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	cd $(FEDERATION) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/lotgraph demo

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest
	.ci/schema-check $(BIN)/lotgraph

# The published SDL, printed from the live schema: run after every schema change, commit the result.
schema: $(STAMP)
	$(BIN)/lotgraph --log-level warning schema write

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(FEDERATION)/node_modules
