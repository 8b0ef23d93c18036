# The Django side (django_app/): worker runtime benchmarks.
#   make bench-worker_overhead      plain db_worker vs taskpool_worker with metrics (QUICK=1 shortens)
#   make bench-worker_concurrency   taskpool_worker throughput at --concurrency 1, 2, 4
#   make bench-threads              I/O-bound tasks on 8 slots: --concurrency 8 vs --threads 8 (throughput, memory)

.PHONY: bench-worker_overhead bench-worker_concurrency bench-threads

bench: bench-worker_overhead bench-worker_concurrency bench-threads

bench-worker_overhead: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.worker_overhead

bench-worker_concurrency: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.worker_concurrency

bench-threads: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.threads

# make bench-retention   1 M finished rows pruned by taskpool_scheduler while a worker runs (QUICK=1 shortens)
.PHONY: bench-retention
bench: bench-retention

bench-retention: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.retention

# make bench-pickup   enqueue -> start on an idle worker, polling vs --notify in one run (QUICK=1 shortens)
.PHONY: bench-pickup
bench: bench-pickup

bench-pickup: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.pickup

# make bench-notify_trigger   insert cost with the READY-notify trigger vs without (QUICK=1 shortens)
.PHONY: bench-notify_trigger
bench: bench-notify_trigger

bench-notify_trigger: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.notify_trigger
