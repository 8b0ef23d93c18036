"""The repository's `operator/` folder must never shadow the standard library's `operator` module."""

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_stdlib_operator_wins_with_repo_root_on_path(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.delitem(sys.modules, "operator")
    module = importlib.import_module("operator")
    assert hasattr(module, "itemgetter"), module
    assert Path(module.__file__ or "").parent != ROOT / "operator"
