#!/usr/bin/env bash
# Installs the tools the chart and image checks need into $TASKPOOL_CACHE/tools (idempotent: a tool whose
# stamp matches its pin is left alone, a changed pin reinstalls it).
#
#   install-tools.sh [helm] [checkov]    install the named tools (default: all); the last line printed is the
#                                        tools' bin folder
#   install-tools.sh --print-bindir      print the bin folder without installing anything
#
# helm     Helm 4, built from its Go module through the Go module proxy (no prebuilt download exists here).
# checkov  in its own virtualenv (it pins heavy dependencies that must not meet the project's venv).
# hadolint and kubernetes-validate come from the project's venv (requirements/dev.txt).
set -euo pipefail

HELM_VERSION=v4.3.1
CHECKOV_VERSION=3.3.30

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${TASKPOOL_CACHE:-$HOME/.cache/taskpool}
bindir="$cache/tools/bin"
if [[ "${1:-}" == "--print-bindir" ]]; then
    echo "$bindir"
    exit 0
fi
mkdir -p "$bindir"

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

install_helm() {
    local stamp="$bindir/.helm.stamp" want="helm $HELM_VERSION"
    if stamp_ok "$stamp" "$want" && [[ -x "$bindir/helm" ]]; then
        echo "install-tools: helm $HELM_VERSION already installed" >&2
        return
    fi
    if ! command -v go >/dev/null; then
        echo "install-tools: 'go' is not on PATH; Helm 4 is built from its Go module (install Go >= 1.26)" >&2
        exit 1
    fi
    # Same module and build caches as the Kubernetes build (devcluster/k8sbuild): shared dependencies
    # (client-go, apimachinery) are downloaded and compiled once.
    export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOFLAGS=-modcacherw GOTOOLCHAIN=local CGO_ENABLED=0
    local start
    start=$(date +%s)
    echo "install-tools: building helm $HELM_VERSION from helm.sh/helm/v4 (cold: several minutes on 2 cores)" >&2
    # The version stamp Helm's own Makefile sets; without it `helm version` reports a bare "v4.3".
    local ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
    # -v logs each package as it is compiled; the terminal gets a progress line a minute (run-quietly.sh).
    if ! GOBIN="$bindir" "$here/scripts/run-quietly.sh" helm "$cache/logs/helm.log" 0 \
        nice -n "${NICE:-10}" go install -v -trimpath -ldflags "$ldflags" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"; then
        echo "install-tools: FAILED to build helm $HELM_VERSION (is the Go module proxy reachable?)" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
    echo "install-tools: helm $HELM_VERSION built in $(($(date +%s) - start)) s" >&2
}

install_checkov() {
    local venv="$cache/tools/checkov-venv" stamp="$bindir/.checkov.stamp"
    local want
    want="checkov $CHECKOV_VERSION $(sha256sum "$here/requirements/checkov-constraints.txt" | cut -c1-12)"
    if stamp_ok "$stamp" "$want" && [[ -x "$bindir/checkov" ]]; then
        echo "install-tools: checkov $CHECKOV_VERSION already installed" >&2
        return
    fi
    local python
    python=$("$here/scripts/find-python.sh")
    echo "install-tools: installing checkov $CHECKOV_VERSION into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$here/scripts/run-quietly.sh" checkov "$cache/logs/checkov.log" 0 \
        "$venv/bin/python" -m pip install -c "$here/requirements/checkov-constraints.txt" "checkov==$CHECKOV_VERSION"
    ln -sf "$venv/bin/checkov" "$bindir/checkov"
    echo "$want" >"$stamp"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm checkov)
for tool in "${tools[@]}"; do
    case "$tool" in
        helm) install_helm ;;
        checkov) install_checkov ;;
        *) echo "install-tools: unknown tool '$tool' (known: helm checkov)" >&2; exit 2 ;;
    esac
done
echo "$bindir"
