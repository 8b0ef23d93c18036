# The Django side (django_app/): worker runtime benchmarks.
#   make bench-worker_overhead      plain db_worker vs taskpool_worker with metrics (QUICK=1 shortens)
#   make bench-worker_concurrency   taskpool_worker throughput at --concurrency 1, 2, 4

.PHONY: bench-worker_overhead bench-worker_concurrency

bench: bench-worker_overhead bench-worker_concurrency

bench-worker_overhead: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) benchmarks/worker_overhead.py

bench-worker_concurrency: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) benchmarks/worker_concurrency.py

# make bench-retention   1 M finished rows pruned by taskpool_scheduler while a worker runs (QUICK=1 shortens)
.PHONY: bench-retention
bench: bench-retention

bench-retention: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) benchmarks/retention.py
