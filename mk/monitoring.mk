# Monitoring: dashboards, rules and their docs, all generated from monitoring/config.py.
#   make monitoring    regenerate them (python -m monitoring)
#   make lint-rules    generated files up to date, promtool check rules, promtool test rules
# (ruff and mypy cover monitoring/ through lint-python)
# promtool comes from Debian's `prometheus` package (scripts/install-system-deps.sh).

PROMTOOL ?= promtool

.PHONY: monitoring lint-rules

monitoring: venv
	$(PY) -m monitoring

lint: lint-rules

lint-rules: venv
	$(PY) -m monitoring --check
	$(PROMTOOL) check rules monitoring/rules/taskpool.rules.yaml
	$(PROMTOOL) test rules monitoring/tests/*.yaml
