#!/usr/bin/env bash
# Builds KEDA's operator and metrics adapter (cmd/operator, cmd/adapter) from the Go modules pinned in go.mod
# into $TASKPOOL_CACHE/keda/<keda version>/bin, once, for the side-by-side benchmark (make bench-keda); nothing
# in the tests or CI needs them. Same recipe as ../k8sbuild/build.sh: a stamp named after the hash of go.mod,
# go.sum and this script (bin/.stamps/<hash>) makes later runs a no-op; Go's module and build caches are the
# shared $TASKPOOL_CACHE/go. The compile runs at the lowest priority (nice 19) one package at a time (-p 1):
# the machine is shared, and nothing waits on this build but the benchmark.
#
#   build.sh                 build if missing, print the bin folder on the last line
#   build.sh --print-bindir  print the bin folder without building
#   build.sh --check         exit 0 if this recipe's binaries are there, 1 if not (builds nothing)
#
# The compiler's output goes to $TASKPOOL_CACHE/logs/keda-binaries.log; the terminal gets a progress line per
# tenth of the packages (scripts/run-quietly.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TASKPOOL_CACHE:-$HOME/.cache/taskpool}
keda_version=$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/kedacore/keda/v2" && $(i + 1) ~ /^v/) print $(i + 1)}' "$here/go.mod")
if [[ -z "$keda_version" ]]; then
    echo "keda-binaries: cannot read the github.com/kedacore/keda/v2 version from $here/go.mod" >&2
    exit 1
fi
bindir="$cache/keda/$keda_version/bin"
if [[ "${1:-}" == "--print-bindir" ]]; then
    echo "$bindir"
    exit 0
fi

want=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -d' ' -f1)
stamp="$bindir/.stamps/$want"
binaries=(keda-operator keda-adapter)
packages=(github.com/kedacore/keda/v2/cmd/operator github.com/kedacore/keda/v2/cmd/adapter)
built() {
    [[ -f "$stamp" ]] || return 1
    for b in "${binaries[@]}"; do [[ -x "$bindir/$b" ]] || return 1; done
}
if [[ "${1:-}" == "--check" ]]; then
    built
    exit
fi
mkdir -p "$cache/keda"
exec 9>"$cache/keda/.build.lock"
flock 9
if built; then
    echo "keda-binaries: $keda_version already built in $bindir" >&2
    echo "$bindir"
    exit 0
fi

if ! command -v go >/dev/null; then
    echo "keda-binaries: 'go' is not on PATH; install Go >= $(awk '$1 == "go" {print $2}' "$here/go.mod")" >&2
    exit 1
fi

export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS="-modcacherw -p=1" GOTOOLCHAIN=local CGO_ENABLED=0
# KEDA's Makefile stamps its version this way; the operator logs it and the adapter reports it.
version_flags="-X github.com/kedacore/keda/v2/version.Version=$keda_version"

tmp="$bindir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$(date +%s)
log="$cache/logs/keda-binaries.log"
mkdir -p "$cache/logs"
echo "keda-binaries: downloading modules for KEDA $keda_version into $GOMODCACHE" >&2
(cd "$here" && go mod download) >"$log" 2>&1 || {
    echo "keda-binaries: FAILED to download the Go modules (is the Go module proxy reachable?); see $log" >&2
    exit 1
}
total=$(cd "$here" && go list -deps "${packages[@]}" 2>>"$log" | wc -l)
echo "keda-binaries: compiling ${binaries[*]} (cold: tens of minutes on 2 shared cores)" >&2
# One invocation for both: they share most packages. -v logs each compiled package.
if ! (cd "$here" && "$here/../../scripts/run-quietly.sh" keda-binaries "$log" "$total" \
    nice -n 19 go build -v -trimpath -ldflags "-s -w $version_flags" -o "$tmp/" "${packages[@]}"); then
    echo "keda-binaries: FAILED compiling the KEDA binaries (see the errors above)" >&2
    exit 1
fi
# go build names each binary after its package's folder: cmd/operator, cmd/adapter.
mv "$tmp/operator" "$tmp/keda-operator"
mv "$tmp/adapter" "$tmp/keda-adapter"
mkdir -p "$bindir"
for b in "${binaries[@]}"; do
    mv -f "$tmp/$b" "$bindir/$b"
done
mkdir -p "$bindir/.stamps"
touch "$stamp"
rm -rf "$tmp"
echo "keda-binaries: built ${binaries[*]} in $(($(date +%s) - start)) s into $bindir" >&2
echo "$bindir"
