"""The import contracts in pyproject.toml ([tool.importlinter], run by `make lint`) hold on this tree and fail
when broken: each case copies the checked packages into a temporary tree, adds one forbidden import and runs
lint-imports there with the repository's own configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Where each root package of the contracts lives in the repository.
PACKAGES = {
    "taskpool_operator": ROOT / "operator" / "taskpool_operator",
    "django_taskpool": ROOT / "django_app" / "django_taskpool",
    "devcluster": ROOT / "devcluster",
    "devdb": ROOT / "devdb",
    "scripts": ROOT / "scripts",
    "benchmarks": ROOT / "benchmarks",
    "tests": ROOT / "tests",
}


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        # A wide console: each contract's verdict on one line.
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the checked packages and the configuration, importable from `tmp_path` alone."""
    for name, source in PACKAGES.items():
        shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold_on_the_copied_tree(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement", "contract"),
    [
        ("taskpool_operator/handlers/violation.py", "import django.db", "The operator never imports Django"),
        (
            "django_taskpool/violation.py",
            "import kopf",
            "The worker runtime (django_taskpool) never imports kopf",
        ),
        ("benchmarks/violation.py", "from tests.support import django_db", "never import test code"),
        ("scripts/demo.py", "import tests.conftest", "never import test code"),
        ("taskpool_operator/policy.py", "from taskpool_operator.probe import hub", "Pure operator modules"),
        ("taskpool_operator/crd.py", "from taskpool_operator import handlers", "Operator layers"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, module: str, statement: str, contract: str
) -> None:
    """A new module, or an import added to an existing one."""
    target = tree / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{statement}\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert any(contract in line for line in broken), result.stdout
