"""`python -m monitoring` regenerates dashboards, rules and docs; `--check` fails when any is out of date."""

from __future__ import annotations

import argparse
import sys

from monitoring import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = generate.stale()
        for path in stale:
            print(f"out of date: {path} (run `python -m monitoring`)", file=sys.stderr)
        return 1 if stale else 0
    for path in generate.write():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
