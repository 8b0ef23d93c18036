#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from the Go modules pinned in
# go.mod into $TASKPOOL_CACHE/k8s/<kubernetes version>/bin, once (kubectl: the client of the same release, so
# every `kubectl` the tests and scripts run is within the supported version skew). A stamp named after the
# hash of go.mod, go.sum and this script (bin/.stamps/<hash>) makes later runs a no-op; a changed pin or recipe
# builds again. Stamps are per recipe, not one file, so checkouts with different recipes for the same release
# (branches sharing the cache) do not take turns rebuilding. The Go module and build caches live in
# $TASKPOOL_CACHE/go so the whole build is disposable with one rm -rf.
#
#   build.sh                 build if missing, print the bin folder on the last line
#   build.sh --print-bindir  print the bin folder without building
#   build.sh --check         exit 0 if this recipe's binaries are there, 1 if not (builds nothing)
#
# The compiler's output (one line per package) goes to $TASKPOOL_CACHE/logs/k8s-binaries.log; the terminal
# gets a progress line per tenth of the packages (scripts/run-quietly.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TASKPOOL_CACHE:-$HOME/.cache/taskpool}
kube_version=$(awk '{for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i + 1) ~ /^v/) print $(i + 1)}' "$here/go.mod")
if [[ -z "$kube_version" ]]; then
    echo "k8s-binaries: cannot read the k8s.io/kubernetes version from $here/go.mod" >&2
    exit 1
fi
bindir="$cache/k8s/$kube_version/bin"
if [[ "${1:-}" == "--print-bindir" ]]; then
    echo "$bindir"
    exit 0
fi

want=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -d' ' -f1)
stamp="$bindir/.stamps/$want"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
packages=(go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
built() {
    [[ -f "$stamp" ]] || return 1
    for b in "${binaries[@]}"; do [[ -x "$bindir/$b" ]] || return 1; done
}
if [[ "${1:-}" == "--check" ]]; then
    built
    exit
fi
# One build at a time per cache (parallel `make test` runs): the second waits, then finds the stamp.
mkdir -p "$cache/k8s"
exec 9>"$cache/k8s/.build.lock"
flock 9
if built; then
    echo "k8s-binaries: $kube_version already built in $bindir" >&2
    echo "$bindir"
    exit 0
fi

if ! command -v go >/dev/null; then
    echo "k8s-binaries: 'go' is not on PATH; install Go >= $(awk '$1 == "go" {print $2}' "$here/go.mod")" >&2
    exit 1
fi

export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
minor=$(echo "$kube_version" | cut -d. -f2)
# The same version stamps Kubernetes' own build (hack/lib/version.sh) sets: clients such as helm read them.
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

tmp="$bindir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$(date +%s)
log="$cache/logs/k8s-binaries.log"
mkdir -p "$cache/logs"
echo "k8s-binaries: downloading modules for Kubernetes $kube_version into $GOMODCACHE" >&2
(cd "$here" && go mod download) >"$log" 2>&1 || {
    echo "k8s-binaries: FAILED to download the Go modules (is the Go module proxy reachable?); see $log" >&2
    exit 1
}
# How many packages a cold build compiles: the progress scale (a warm compile cache skips most of them).
total=$(cd "$here" && go list -deps "${packages[@]}" 2>>"$log" | wc -l)
echo "k8s-binaries: compiling ${binaries[*]} (cold: tens of minutes on 2 cores)" >&2
# One invocation for all five: they share most packages and the compile cache. -v logs each compiled package.
if ! (cd "$here" && "$here/../../scripts/run-quietly.sh" k8s-binaries "$log" "$total" \
    nice -n "${NICE:-10}" go build -v -trimpath -ldflags "-s -w $version_flags" -o "$tmp/" "${packages[@]}"); then
    echo "k8s-binaries: FAILED compiling the Kubernetes binaries (see the errors above)" >&2
    exit 1
fi
# The etcd main package is go.etcd.io/etcd/server/v3; go build names its binary after "server".
mv "$tmp/server" "$tmp/etcd"
for b in "${binaries[@]}"; do
    [[ -x "$tmp/$b" ]] || { echo "k8s-binaries: FAILED: $b was not produced" >&2; exit 1; }
done
# Renames replace each binary atomically: a cluster starting meanwhile runs either the old or the new one.
mkdir -p "$bindir"
for b in "${binaries[@]}"; do
    mv -f "$tmp/$b" "$bindir/$b"
done
mkdir -p "$bindir/.stamps"
touch "$stamp"
rm -rf "$tmp"
echo "k8s-binaries: built ${binaries[*]} in $(($(date +%s) - start)) s into $bindir" >&2
echo "$bindir"
