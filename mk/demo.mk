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
