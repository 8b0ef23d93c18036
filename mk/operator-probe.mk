# The operator's data plane (probe, policy): its benchmarks.
#   make bench-probe        capped probe vs naive count(*) at 10 k, 100 k, 1 M ready rows (QUICK=1: up to 100 k)
#   make bench-many_pools   200 and 1,000 pools on one database: statements per probe tick, the operator's RSS
#                           (cluster; takes the cluster lock itself for that phase; QUICK=1: 10 s phases)

.PHONY: bench-probe bench-many_pools

bench: bench-probe bench-many_pools

bench-probe: venv
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.probe

bench-many_pools: venv k8s-binaries
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.many_pools

# make bench-operator_memory   where the operator's per-pool memory goes (tracemalloc, object counts; cluster)
.PHONY: bench-operator_memory
bench-operator_memory: venv k8s-binaries
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.operator_memory
