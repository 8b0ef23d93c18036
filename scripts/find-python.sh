#!/usr/bin/env bash
# Prints the path of a Python 3.12+ interpreter. pyenv shims answer "command not found" for versions
# that are installed but not selected, so every candidate is actually run before it is chosen.
set -euo pipefail
candidates=("${PYTHON:-}" python3.12 python3.13)
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*; do
  [ -d "$dir" ] && candidates+=("$dir/bin/python3")
done
candidates+=(python3)
for c in "${candidates[@]}"; do
  [ -n "$c" ] || continue
  if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
    "$c" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: no Python 3.12+ found (tried: ${candidates[*]}); install python3.12 or set PYTHON" >&2
exit 1
