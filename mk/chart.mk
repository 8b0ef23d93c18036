# The Helm chart and the images: tools, lint, generated files.
#   make chart-tools    Helm 4 (built from its Go module) and checkov into $(TASKPOOL_CACHE)/tools (idempotent)
#   make chart-sync     regenerate the chart's CRD copy and README values table from their sources
#   make lint-chart     helm lint --strict on every ci/ values file; generated files current
#   make lint-docker    hadolint on both Dockerfiles
#   make lint-schemas   rendered manifests against Kubernetes 1.30..1.37 strict schemas; checkov on them

TOOLS_BIN := $(TASKPOOL_CACHE)/tools/bin
HELM := $(TOOLS_BIN)/helm
CHECKOV := $(TOOLS_BIN)/checkov
CHART_DIR := charts/taskpool
CHART_RENDER_DIR := .cache/chart-render

.PHONY: chart-tools chart-sync lint-chart lint-docker lint-schemas

test-prereqs: chart-tools
lint: lint-chart lint-docker lint-schemas

chart-tools:
	scripts/install-tools.sh helm checkov

chart-sync: venv
	$(PY) -m charts.sync

lint-chart: venv chart-tools
	$(PY) -m charts.sync --check
	$(VENV)/bin/ruff check --no-force-exclude charts/*.py
	$(VENV)/bin/ruff format --check --no-force-exclude charts/*.py
	@for values in $(CHART_DIR)/ci/*-values.yaml; do \
		echo "helm lint --strict ($$values)"; \
		$(HELM) lint --strict $(CHART_DIR) --values "$$values" --quiet; \
	done

lint-docker: venv
	$(VENV)/bin/hadolint Dockerfile worker_image/Dockerfile

lint-schemas: venv chart-tools
	$(PY) charts/checks.py validate
	rm -rf $(CHART_RENDER_DIR) && $(PY) charts/checks.py render $(CHART_RENDER_DIR)
	$(CHECKOV) --config-file charts/checkov.yaml --directory $(CHART_RENDER_DIR)
	$(CHECKOV) --config-file charts/checkov.yaml --file Dockerfile --file worker_image/Dockerfile

# The demo runs the whole stack: the chart on the local cluster (Helm and the Kubernetes binaries first).
demo: chart-tools k8s-binaries
