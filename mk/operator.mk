# The operator (operator/taskpool_operator): its benchmark.
#   make bench-reaction   seconds from a burst to the Deployment's spec.replicas changing (QUICK=1: 5 trials)

.PHONY: bench-reaction

bench: bench-reaction

bench-reaction: venv k8s-binaries
	$(if $(QUICK),QUICK=$(QUICK)) $(PY) -m benchmarks.reaction
