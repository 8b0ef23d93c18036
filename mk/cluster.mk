# The local Kubernetes cluster for end-to-end tests and the demo (devcluster/, docs/local-cluster.md).
#   make k8s-binaries   build etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from the
#                       Go modules pinned in devcluster/k8sbuild/go.mod into $(TASKPOOL_CACHE)/k8s (once; reused;
#                       a few progress lines, the compiler's log in $(TASKPOOL_CACHE)/logs/k8s-binaries.log)
#   make cluster-up     start a cluster in the background (root); prints the KUBECONFIG and the built kubectl
#   make cluster-down   stop it: every pod, node agent and control-plane process ends
#   make test-cluster   the cluster's own end-to-end tests (tests/e2e/test_cluster.py)

.PHONY: k8s-binaries cluster-up cluster-down test-cluster

test-prereqs: k8s-binaries

k8s-binaries:
	devcluster/k8sbuild/build.sh >/dev/null

cluster-up: venv k8s-binaries
	$(PY) -m devcluster up $(if $(NODES),--nodes $(NODES))

cluster-down: venv
	$(PY) -m devcluster down

test-cluster: venv k8s-binaries
	$(PY) -m pytest tests/e2e/test_cluster.py $(PYTEST_ARGS)

# KEDA beside our operator (benchmarks/keda.py, devcluster/keda.py): only the benchmark needs it, not CI.
#   make keda-binaries  build KEDA's operator and metrics adapter from devcluster/kedabuild/go.mod into
#                       $(TASKPOOL_CACHE)/keda (once; niced, one package at a time: tens of minutes cold)
#   make bench-keda     TaskWorkerPool vs KEDA's postgresql scaler on one cluster, 3 bursts per side (~30 min
#                       unloaded; QUICK=1: one burst per side)
.PHONY: keda-binaries bench-keda

keda-binaries:
	devcluster/kedabuild/build.sh >/dev/null

bench-keda: venv k8s-binaries keda-binaries
	$(if $(QUICK),QUICK=$(QUICK)) flock /tmp/taskpool-e2e.lock $(PY) -m benchmarks.keda
