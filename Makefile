# The two commands: `make run` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck check check-deploy clean stop-db bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "jobfleet needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## run: a supervisor with the example handlers on the embedded PostgreSQL (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/jobfleet migrate
	$(BIN)/jobfleet enqueue echo --payload '{"hello": "jobfleet"}'
	$(BIN)/jobfleet enqueue flaky --payload '{"fail_times": 1}' --backoff fixed:0.5
	$(BIN)/jobfleet enqueue sleep --payload '{"seconds": 0.2}' --delay 2
	exec $(BIN)/jobfleet supervisor

## test: the whole suite, in parallel, against a real PostgreSQL
test: $(STAMP)
	$(BIN)/python -m pytest -n auto

## bench: every scenario and the peers; rewrites docs/bench/ and BENCHMARKS.md (about 5 minutes)
# Installs the [bench] extra, and redis-server (for Celery) with apt-get when root and missing.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@command -v redis-server >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@mkdir -p docs/bench
	$(BIN)/jobfleet bench --json > docs/bench/results.json
	$(BIN)/python -m jobfleet.supervisor.bench.docs docs/bench/results.json BENCHMARKS.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' package-dir mapping, so it checks a tree of links laid out
# as the installed package is.
typecheck: $(STAMP)
	@rm -rf .typecheck && mkdir -p .typecheck/jobfleet
	@ln -s $(CURDIR)/common/*.py $(CURDIR)/common/py.typed .typecheck/jobfleet/
	@for d in worker supervisor sql; do ln -s $(CURDIR)/$$d .typecheck/jobfleet/$$d; done
	cd .typecheck && ../$(BIN)/mypy --config-file ../pyproject.toml -p jobfleet

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
	rm -rf $(VENV) .jobfleet .pytest_cache .typecheck
