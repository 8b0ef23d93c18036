"""Finished task rows written straight into django-tasks-db's table, many at once (retention tests and the
retention benchmark)."""

from __future__ import annotations

import psycopg

from taskpool_operator.probe.sql import TASK_TABLE

_INSERT = (
    f"INSERT INTO {TASK_TABLE}"
    + """
    (id, status, enqueued_at, started_at, finished_at, args_kwargs, priority, task_path, worker_ids,
     queue_name, backend_name, run_after, return_value, exception_class_path, traceback)
SELECT gen_random_uuid(), %(status)s, t, t, t, '{"args": [], "kwargs": {}}', 0, 'taskpool_demo.tasks.noop',
       '["bench-0"]', %(queue)s, 'default', '9999-01-01 00:00+00', NULL, '', ''
FROM (SELECT now() - make_interval(secs => %(age)s::float8 + i * %(spread)s::float8 / %(count)s) AS t
      FROM generate_series(1, %(count)s) AS i) AS finished
"""
)


def insert_finished(
    dsn: str, count: int, *, queue: str, status: str, age_s: float, spread_s: float = 0.0
) -> None:
    """`count` rows of `queue` in `status` (SUCCESSFUL or FAILED) that finished between `age_s` and
    `age_s + spread_s` seconds ago."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            _INSERT, {"status": status, "queue": queue, "age": age_s, "spread": spread_s, "count": count}
        )
