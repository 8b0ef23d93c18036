"""`taskpool-operator`: CRD output, one-line errors for bad input (exit 2), failures as exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskpool_operator import cli


def test_crd_prints_the_single_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crd"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["metadata"]["name"] == "taskworkerpools.taskpool.dev"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: command"),
        (["probe"], "one of the arguments --dsn-env --dsn is required"),
        (["probe", "--dsn-env", "TASKPOOL_TEST_UNSET_VARIABLE"], "TASKPOOL_TEST_UNSET_VARIABLE is not set"),
        (["probe", "--dsn", "postgresql://u:p@[bad"], "not a valid PostgreSQL connection string"),
        (["probe", "--dsn", "dbname=x", "--queue", "q" * 33], "1 to 32 characters"),
        (
            ["probe", "--dsn", "dbname=x", "--queue", "a", "--exclude-queue", "b"],
            'only allowed together with queues ["*"]',
        ),
        (["run", "--metrics-port", "99999"], "99999 is not a port number"),
        (["run", "-n", "a", "-A"], "not allowed with argument"),
        (["delete-pools"], "the following arguments are required: NAMESPACE/NAME"),
        (["delete-pools", "shop"], "'shop' is not NAMESPACE/NAME"),
        (["delete-pools", "shop/"], "'shop/' is not NAMESPACE/NAME"),
        (["delete-pools", "a/b/c"], "'a/b/c' is not NAMESPACE/NAME"),
        (["delete-pools", "--timeout", "0", "a/b"], "0 must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKPOOL_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err
    assert "p@[bad" not in err


def test_probe_failure_is_exit_1_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["probe", "--dsn", "postgresql://app:hunter2@/db?host=/nonexistent", "--timeout", "1"]) == 1
    )
    err = capsys.readouterr().err
    assert "probe failed (connect)" in err
    assert "hunter2" not in err


def test_delete_pools_without_credentials_is_exit_1_naming_the_cause(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert cli.main(["delete-pools", "shop/a"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("taskpool-operator: delete-pools failed: ")
    assert "missing" in err
    assert "Traceback" not in err
