# The demo (scripts/demo.py): a burst of tasks with a live view of the queues and a summary.
#   make demo         the whole stack on the local cluster (operator, chart, worker pods; see scripts/demo.py)
#   make demo-local   processes only: embedded PostgreSQL, the demo app and a taskpool_worker pool
#   DEMO_ARGS="--concurrency 4" passes options (scripts/demo.py --help)

.PHONY: demo demo-local

DEMO_ARGS ?=

demo: venv
	$(PY) -m scripts.demo $(DEMO_ARGS)

demo-local: venv
	$(PY) -m scripts.demo --local $(DEMO_ARGS)

# make bench-demo_first_run   lines a first `make demo` prints before the demo starts: a fresh clone, cold caches
#                             (compiles Kubernetes and Helm from scratch: tens of minutes; not part of `make bench`;
#                             takes /tmp/taskpool-e2e.lock itself for the demo part only)
.PHONY: bench-demo_first_run

bench-demo_first_run: venv
	$(PY) -m benchmarks.demo_first_run $(if $(KEEP),--keep)
