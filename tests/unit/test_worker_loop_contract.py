"""The runtime's safe-stop logic relies on the shape of django-tasks-db's worker loop; this guards it.

`TaskpoolWorker.running` is a property that flips "between turns" on every read, which is only right while
upstream's `Worker.run` reads `self.running` exactly twice per turn: at the top of the loop and just before
it sleeps. If an upgrade changes that, this test fails before a worker can exit in the middle of a claim.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def worker_run_source() -> ast.FunctionDef:
    spec = importlib.util.find_spec("django_tasks_db")
    assert spec is not None
    assert spec.origin is not None
    path = Path(spec.origin).parent / "management" / "commands" / "db_worker.py"
    module = ast.parse(path.read_text())
    worker = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "Worker")
    return next(n for n in worker.body if isinstance(n, ast.FunctionDef) and n.name == "run")


def reads_of_running(node: ast.AST) -> list[ast.Attribute]:
    return [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute)
        and n.attr == "running"
        and isinstance(n.value, ast.Name)
        and n.value.id == "self"
        and isinstance(n.ctx, ast.Load)
    ]


def test_upstream_loop_reads_running_at_the_top_and_before_sleeping() -> None:
    run = worker_run_source()
    (loop,) = [n for n in run.body if isinstance(n, ast.While)]
    assert reads_of_running(loop.test), "the loop condition must be `self.running`"
    in_body = reads_of_running(ast.Module(body=loop.body, type_ignores=[]))
    assert len(in_body) == 1, "exactly one more read per turn"
    last = loop.body[-1]
    assert isinstance(last, ast.If)
    assert reads_of_running(last.test) == in_body, "the second read guards the sleep at the end of a turn"
    assert "sleep" in ast.unparse(last.body[-1])


def test_upstream_sleeps_its_interval_so_notify_mode_can_wait_instead() -> None:
    """`--notify` hands upstream `interval=0` and waits in the second read of `running`: that is right only
    while the sleep at the end of a turn is `time.sleep(self.interval)`."""
    run = worker_run_source()
    (loop,) = [n for n in run.body if isinstance(n, ast.While)]
    last = loop.body[-1]
    assert isinstance(last, ast.If)
    assert ast.unparse(last.body[-1]) == "time.sleep(self.interval)"
