# Two commands matter: `make demo` and `make test`. Everything else is a step they take.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test setup debian proxy-venv lint typecheck imports unit bench bench-debian clean agent-windows agent-locale dashboard-locale deb

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[server,agent,sentinel,dev]'
	touch $(STAMP)

debian:
	bash scripts/setup-debian.sh

# mitmproxy lives in its own virtualenv (Python >= 3.12 where the machine has one): docs/proxy.md.
proxy-venv:
	bash scripts/setup-proxy-venv.sh

# Front-end libraries come from the npm registry (lock file committed, node_modules never).
NPM_STAMP := dashboard/node_modules/.installed
$(NPM_STAMP): dashboard/package-lock.json
	npm ci --prefix dashboard --no-audit --no-fund
	touch $(NPM_STAMP)

setup: debian $(STAMP) proxy-venv $(NPM_STAMP)

# dist/invigil_<version>_amd64.deb, built in a cached trixie root (.cache/) and checked by lintian.
deb: debian $(NPM_STAMP)
	bash scripts/build-deb.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# The agent's messages in Dutch (docs/agent.md): extract, merge into the .po, compile the .mo that ships.
# --use-fuzzy: pybabel counts a catalogue without a header as fuzzy; update never makes fuzzy entries.
agent-locale: $(STAMP)
	$(BIN)/pybabel -q extract -k _ --no-location --omit-header --sort-output -o agent/locale/invigil-agent.pot agent
	$(BIN)/pybabel -q update -D invigil-agent -i agent/locale/invigil-agent.pot -d agent/locale --omit-header --no-fuzzy-matching
	$(BIN)/pybabel -q compile --use-fuzzy -D invigil-agent -d agent/locale --statistics

# The dashboard's pages in Dutch (docs/dashboard.md): the same three steps for the templates and views
# (babel.cfg); Flask-Babel reads the compiled dashboard/translations/nl/LC_MESSAGES/messages.mo.
dashboard-locale: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -k _l --no-location --omit-header --sort-output -o dashboard/translations/messages.pot dashboard
	$(BIN)/pybabel -q update -i dashboard/translations/messages.pot -d dashboard/translations --omit-header --no-fuzzy-matching
	$(BIN)/pybabel -q compile --use-fuzzy -d dashboard/translations --statistics

# The agent's Windows installer, built on Linux (docs/agent.md): pynsist + NSIS on the signed CPython build.
AGENT_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
WINDOWS_INSTALLER := dist/invigil-agent-$(AGENT_VERSION)-setup.exe
$(WINDOWS_INSTALLER): $(STAMP) scripts/build_agent_windows.py $(wildcard packaging/windows/*) \
		$(shell find agent invigil -name '*.py' -o -name '*.json' -o -name '*.mo')
	$(BIN)/python scripts/build_agent_windows.py

agent-windows: debian $(WINDOWS_INSTALLER)

# INVIGIL_NO_SKIPS: setup installed every tool, so a test that would skip for lack of one fails instead.
unit: setup agent-windows
	INVIGIL_NO_SKIPS=1 $(BIN)/pytest -q $(PYTEST_ARGS)

test: setup lint typecheck imports unit

demo: setup
	$(BIN)/python scripts/demo.py

bench-debian:
	bash scripts/setup-debian.sh bench

bench: setup bench-debian
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/proxy.py

clean:
	rm -rf $(VENV) .venv-proxy .mypy_cache .ruff_cache .pytest_cache demo-data .cache dist
