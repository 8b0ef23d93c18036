# taskpool — one entry point for developers and CI.
#   make test    every tier (unit, integration on PostgreSQL, end-to-end on the local control plane)
#   make lint    ruff, import contracts, mypy, helm lint, hadolint, promtool and schema checks
#   make bench   every benchmark (QUICK=1 shortens them); make bench-<name> runs one
#   make demo    the whole stack, locally
# Each area adds its own prerequisites and targets in mk/<area>.mk.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Built binaries and downloaded tools live outside the repository and are reused between runs.
export TASKPOOL_CACHE ?= $(HOME)/.cache/taskpool
PYTEST_ARGS ?=

.PHONY: help venv test test-unit test-integration test-e2e lint lint-python bench demo test-prereqs

help:
	@sed -n '2,6p' Makefile

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/constraints.txt requirements/dev.txt operator/pyproject.toml django_app/pyproject.toml
	@python=$$(scripts/find-python.sh) && echo "creating $(VENV) with $$python" && "$$python" -m venv $(VENV)
	@# pip's own output (package lists, build warnings) goes to a log; the terminal gets a few progress lines.
	scripts/run-quietly.sh venv $(VENV)/install.log 0 \
		bash -c '$(PY) -m pip install pip==26.3 && $(PY) -m pip install -r requirements/dev.txt'
	@touch $@

# Areas add what the tests need (built Kubernetes binaries, helm, promtool...) as prerequisites of test-prereqs.
test-prereqs: venv

test: test-prereqs
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: test-prereqs
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: lint-python

lint-python: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@# django-stubs imports the demo settings, which require a DATABASE_URL (never connected to here).
	@# benchmarks/memory_probe (a folder put on the operator's PYTHONPATH, no package) is checked as a namespace package.
	DATABASE_URL=postgresql://mypy@localhost/mypy $(VENV)/bin/mypy operator/taskpool_operator django_app/django_taskpool monitoring devcluster devdb \
		benchmarks scripts tests/support charts

include $(wildcard mk/*.mk)
