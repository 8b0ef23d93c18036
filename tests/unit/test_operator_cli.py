"""`taskpool-operator`: CRD output and one-line errors for bad input (exit 2)."""

from __future__ import annotations

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
