#!/usr/bin/env bash
# Runs a long build step with all its output in a log file and prints only a few progress lines: what runs,
# how far it is, how long it has taken, and where the full log is. On failure, the log's last lines.
#
#   run-quietly.sh WHAT LOG TOTAL COMMAND [ARG...]
#
# TOTAL is how many output lines a complete run prints (a `go build -v` prints one line per compiled package):
# a line is printed each time the output passes another tenth of it. With TOTAL 0 (unknown), or when nothing
# moved for a minute, a line says how long it has been running. Exits with the command's status.
set -euo pipefail

what=$1 log=$2 total=$3
shift 3
mkdir -p "$(dirname "$log")"
elapsed() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }

start=$SECONDS
echo "$what: started (full log: $log)" >&2
"$@" >"$log" 2>&1 &
pid=$!
reported_tenth=0
reported_at=$SECONDS
while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    lines=$(wc -l <"$log")
    tenth=0
    if ((total > 0)); then
        tenth=$((lines * 10 / total))
        ((tenth < 10)) || tenth=9
    fi
    if ((tenth > reported_tenth)); then
        echo "$what: $((tenth * 10))% ($lines of ~$total), $(elapsed)" >&2
        reported_tenth=$tenth
        reported_at=$SECONDS
    elif ((SECONDS - reported_at >= 60)); then
        echo "$what: running, $(elapsed) ($lines lines in the log)" >&2
        reported_at=$SECONDS
    fi
done
status=0
wait "$pid" || status=$?
if ((status != 0)); then
    echo "$what: FAILED (exit $status) after $(elapsed); the end of $log:" >&2
    tail -n 25 "$log" >&2
    exit "$status"
fi
echo "$what: done in $(elapsed)" >&2
