#!/usr/bin/env python3
"""Renders the chart and validates the result: the library behind `make lint-schemas` and the chart tests.

python charts/checks.py validate   render every values file in charts/taskpool/ci/ and validate the
                                   manifests against every supported Kubernetes version (strict schemas);
                                   TaskWorkerPools against the CRD's own schema
python charts/checks.py render DIR render the same manifests into DIR (one file per values file), for checkov
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "taskpool"
CI_VALUES = CHART / "ci"
# Every minor release the chart supports (Chart.yaml kubeVersion) that kubernetes-validate has schemas for.
SUPPORTED_KUBERNETES = [f"1.{minor}.0" for minor in range(30, 38)]
# Kinds whose schema lives in a CRD we do not ship (the Prometheus Operator's); checked by the chart tests.
THIRD_PARTY_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


class ToolMissing(RuntimeError):
    pass


def helm_binary() -> str:
    """Helm 4 from $HELM, else from scripts/install-tools.sh's folder, else PATH."""
    cache = Path(os.environ.get("TASKPOOL_CACHE", Path.home() / ".cache" / "taskpool"))
    for candidate in (os.environ.get("HELM"), str(cache / "tools" / "bin" / "helm")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise ToolMissing("helm 4 is not installed: run `make test-prereqs` (scripts/install-tools.sh helm)")


def helm(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, check=False, env=env, timeout=300
    )
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
    return result


def template(
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    *,
    release: str = "taskpool",
    namespace: str = "taskpool-system",
    extra: Sequence[str] = (),
) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace, "--include-crds"]
    for file in values_files:
        args += ["--values", str(file)]
    for item in set_values:
        args += ["--set-json", item]
    return helm(*args, *extra).stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def ci_values_files() -> list[Path]:
    return sorted(CI_VALUES.glob("*-values.yaml"))


@functools.cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "operator" / "taskpool_operator" / "crd.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def validate(
    manifests: Iterable[dict[str, Any]], versions: Sequence[str] = SUPPORTED_KUBERNETES
) -> list[str]:
    """Errors of every manifest against each version's strict schema; an empty list when all pass."""
    errors = []
    for doc in manifests:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") in THIRD_PARTY_KINDS:
            continue
        if doc.get("apiVersion") == "taskpool.dev/v1alpha1":
            for error in jsonschema.Draft7Validator(crd_schema()).iter_errors(doc):
                errors.append(f"{where}: {error.json_path}: {error.message}")
            continue
        for version in versions:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    path = ".".join(str(part) for part in exc.path)
                    errors.append(f"{where} (Kubernetes {version}): {path}: {exc.message}")
                except kubernetes_validate.SchemaNotFoundError as exc:
                    errors.append(f"{where} (Kubernetes {version}): no schema: {exc}")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate")
    render = sub.add_parser("render")
    render.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    files = ci_values_files()
    if args.command == "render":
        args.directory.mkdir(parents=True, exist_ok=True)
        for file in files:
            (args.directory / f"{file.stem}.yaml").write_text(template([file]))
        return 0
    failed = False
    for file in files:
        manifests = documents(template([file]))
        errors = validate(manifests)
        kinds = sorted({m["kind"] for m in manifests})
        status = "ok" if not errors else f"{len(errors)} errors"
        print(
            f"{file.name}: {len(manifests)} manifests ({', '.join(kinds)}) on Kubernetes "
            f"{SUPPORTED_KUBERNETES[0]}..{SUPPORTED_KUBERNETES[-1]}: {status}"
        )
        for error in errors:
            print(f"  {error}")
        failed = failed or bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
