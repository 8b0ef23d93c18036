# The local demo: embedded PostgreSQL, the demo app, a pool of workers and a burst of tasks with a live view.
#   make demo   (DEMO_ARGS="--concurrency 4" to change it; see scripts/demo.py --help)

DEMO_ARGS ?=

demo: venv
	$(PY) scripts/demo.py $(DEMO_ARGS)
