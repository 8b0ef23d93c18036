# The fault suite (devcluster/fault_scenarios.py): small in `make test` (tests/e2e/test_faults.py), full here.
#   make bench-faults   task accounting and seconds to settle per fault scenario on the local cluster
#                       (QUICK=1: smaller counts, a 20 s database outage); writes benchmarks/results/faults.json

.PHONY: bench-faults

bench: bench-faults

bench-faults: venv k8s-binaries
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.faults
