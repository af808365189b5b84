# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINKED := $(VENV)/.linked
# The editable install is setuptools' strict mode: a tree of links (under build/) laid out as
# the installed package is, which mypy and a user's own tools follow (its default import hook
# they cannot). A file added or removed needs the tree made again: LINKED keeps the list.
EDITABLE := --config-settings editable_mode=strict
# Bytecode for the package, as pip compiles a regular install's at install time. An editable
# install gets none where PYTHONDONTWRITEBYTECODE is set (it is on this machine), and then
# every `jobfleet` start compiled the package's modules again: 60-70 ms of a supervisor's
# start before its first claim. Up-to-date files are skipped; an edited module is compiled in
# memory at its next import (the cached file no longer matches its source) until this runs.
COMPILE = $(BIN)/python -m compileall -q \
	"$$($(BIN)/python -c 'import importlib.util as u; print(u.find_spec("jobfleet").submodule_search_locations[0])')" >/dev/null

.PHONY: run test lint typecheck check check-deploy clean stop-db bench FORCE

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "jobfleet needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' $(EDITABLE)
	@find common worker supervisor sql -type f | sort > $(LINKED)
	@$(COMPILE)
	@touch $(STAMP)

$(LINKED): $(STAMP) FORCE
	@find common worker supervisor sql -type f | sort > $(LINKED).new
	@cmp -s $(LINKED).new $(LINKED) || \
		$(BIN)/python -m pip install --quiet --no-deps -e . $(EDITABLE)
	@mv $(LINKED).new $(LINKED)
	@$(COMPILE)

## run: a supervisor with the example handlers on the embedded PostgreSQL (Ctrl-C stops it)
run: $(LINKED)
	$(BIN)/jobfleet migrate
	$(BIN)/jobfleet enqueue echo --payload '{"hello": "jobfleet"}'
	$(BIN)/jobfleet enqueue flaky --payload '{"fail_times": 1}' --backoff fixed:0.5
	$(BIN)/jobfleet enqueue sleep --payload '{"seconds": 0.2}' --delay 2
	exec $(BIN)/jobfleet supervisor

## test: the whole suite, in parallel, against a real PostgreSQL
test: $(LINKED)
	$(BIN)/python -m pytest -n auto

## bench: every scenario and the peers; rewrites docs/bench/ and BENCHMARKS.md (about 5 minutes)
# Installs the [bench] extra, and redis-server (for Celery) with apt-get when root and missing;
# the bench itself installs graphile-worker with npm into ~/.cache/jobfleet-bench (once).
bench: $(LINKED)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]' $(EDITABLE)
	@command -v redis-server >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v node >/dev/null && command -v npm >/dev/null || \
		echo "make bench: node or npm not found, the Graphile Worker peer is skipped" >&2
	@mkdir -p docs/bench
	$(BIN)/jobfleet bench --json > docs/bench/results.json
	$(BIN)/python -m jobfleet.bench.docs docs/bench/results.json BENCHMARKS.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy checks the package as installed (the editable install's tree of links), from a folder
# where the repository's own folders cannot shadow it.
typecheck: $(LINKED)
	cd /tmp && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/.mypy_cache -p jobfleet

check: lint typecheck test

## check-deploy: promtool checks of the alert rules (with their unit tests) and both scrape
## configs, then the deploy tests (compose, Kubernetes and systemd files parse and call real
## commands). promtool comes from Debian's `prometheus` package, installed here when missing
## and run as root (without systemd it is not started as a service).
check-deploy: $(STAMP)
	@command -v promtool >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		else \
			echo "check-deploy needs promtool: apt-get install prometheus (as root)" >&2; exit 1; \
		fi; }
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml
	promtool check config deploy/prometheus/prometheus.yml
	promtool check config deploy/compose/prometheus.yml
	$(BIN)/python -m pytest -q -p no:cacheprovider $(wildcard tests/test_deploy*.py)

stop-db: $(STAMP)
	$(BIN)/jobfleet db stop

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache
