"""Every SQL statement the operator sends, in one place.

The operator reads django-tasks-db's table directly (it never imports Django), so the SQL here restates
`DBTaskResult.objects.ready()`: a task is ready when `status = 'READY'` and its `run_after` is either the
"no run_after" sentinel or not after the database clock.

The indexes named below are created by the `django_taskpool` migration `0001_probe_indexes`; the depth query
checks they exist on every run (a catalog lookup) and refuses to scan the table without them.
"""

from __future__ import annotations

from typing import Final

TASK_TABLE: Final = "django_tasks_database_dbtaskresult"
# django-tasks-db stores "no run_after" as this value (USE_TZ = True, Django's default).
RUN_AFTER_SENTINEL: Final = "9999-01-01 00:00:00+00"
READY_INDEX: Final = "taskpool_ready_queue_idx"
RUNNING_INDEX: Final = "taskpool_running_idx"

# Connection settings applied once per new connection: the probe can never write, and a slow query is
# cancelled by the server rather than piling up behind the next tick.
CONFIGURE_SESSION: Final = (
    "SELECT set_config('default_transaction_read_only', 'on', false),"
    " set_config('statement_timeout', %(statement_timeout)s, false)"
)

# One statement returns every (backend, queue) the registered pools care about:
#   kind = 'ready'         backend, queue, tasks = ready count capped at `cap`, oldest_age_s (NULL when none)
#   kind = 'running'       backend, queue, worker_id = last entry of worker_ids, tasks = RUNNING rows
#   kind = 'missing_index' one row, nothing else, when the migration's indexes are absent
#
# Parameters: listed_backends/listed_queues/listed_caps (pools that name their queues), wild_backends/
# wild_caps (pools that take every queue of a backend), backends (every backend of interest, for RUNNING).
#
# Cost stays flat however deep the backlog: each (backend, queue) reads at most `cap` entries of the
# partial READY index twice (sentinel rows, then dated rows), wildcard pools enumerate their queues with a
# loose index scan (one index seek per distinct queue with READY rows), and RUNNING rows, bounded by the
# number of worker processes, come from their own partial index. (The loose scan orders by
# `queue_name, run_after` so that only the READY index can serve it: the plain `queue_name` index could, but
# would walk past every finished row of a queue.)
#
# The age of a ready task counts from the later of enqueued_at and run_after. For sentinel rows the oldest
# is exact (index order is enqueued_at); for dated rows it is the minimum over the `cap` earliest run_after
# entries, which is exact unless more than `cap` ready tasks were scheduled in the past before the oldest
# one was enqueued (then the age is understated, never overstated).
# Only module constants are interpolated below; every value from outside is a bound parameter.
QUEUE_DEPTH: Final = f"""
WITH RECURSIVE
guard AS (
    SELECT to_regclass('{READY_INDEX}') IS NOT NULL
       AND to_regclass('{RUNNING_INDEX}') IS NOT NULL AS indexed
),
listed AS (
    SELECT l.backend_name, l.queue_name, l.cap
    FROM unnest(%(listed_backends)s::text[], %(listed_queues)s::text[], %(listed_caps)s::int[])
        AS l (backend_name, queue_name, cap)
),
wild AS (
    SELECT w.backend_name, w.cap
    FROM unnest(%(wild_backends)s::text[], %(wild_caps)s::int[]) AS w (backend_name, cap)
),
ready_pairs AS (
    SELECT w.backend_name, f.queue_name
    FROM wild AS w
    CROSS JOIN LATERAL (
        SELECT t.queue_name FROM {TASK_TABLE} AS t
        WHERE t.status = 'READY' AND t.backend_name = w.backend_name
        ORDER BY t.queue_name, t.run_after LIMIT 1
    ) AS f
    UNION ALL
    SELECT p.backend_name, n.queue_name
    FROM ready_pairs AS p
    CROSS JOIN LATERAL (
        SELECT t.queue_name FROM {TASK_TABLE} AS t
        WHERE t.status = 'READY' AND t.backend_name = p.backend_name AND t.queue_name > p.queue_name
        ORDER BY t.queue_name, t.run_after LIMIT 1
    ) AS n
),
pairs AS (
    SELECT u.backend_name, u.queue_name, max(u.cap) AS cap
    FROM (
        SELECT backend_name, queue_name, cap FROM listed
        UNION ALL
        SELECT r.backend_name, r.queue_name, w.cap FROM ready_pairs AS r JOIN wild AS w USING (backend_name)
    ) AS u
    GROUP BY u.backend_name, u.queue_name
)
SELECT 'ready' AS kind, p.backend_name::text, p.queue_name::text, NULL::text AS worker_id,
       LEAST(p.cap, undated.n + dated.n)::bigint AS tasks,
       EXTRACT(EPOCH FROM now() - LEAST(undated.oldest, dated.oldest))::float8 AS oldest_age_s
FROM pairs AS p
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(x.enqueued_at) AS oldest
    FROM (
        SELECT t.enqueued_at FROM {TASK_TABLE} AS t
        WHERE t.status = 'READY' AND t.backend_name = p.backend_name AND t.queue_name = p.queue_name
          AND t.run_after = '{RUN_AFTER_SENTINEL}'::timestamptz
        ORDER BY t.enqueued_at LIMIT p.cap
    ) AS x
) AS undated
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(GREATEST(x.enqueued_at, x.run_after)) AS oldest
    FROM (
        SELECT t.enqueued_at, t.run_after FROM {TASK_TABLE} AS t
        WHERE t.status = 'READY' AND t.backend_name = p.backend_name AND t.queue_name = p.queue_name
          AND t.run_after <= now()
        ORDER BY t.run_after, t.enqueued_at LIMIT p.cap
    ) AS x
) AS dated
WHERE (SELECT indexed FROM guard)
UNION ALL
SELECT 'running', t.backend_name::text, t.queue_name::text, t.worker_ids ->> -1, count(*), NULL
FROM {TASK_TABLE} AS t
WHERE t.status = 'RUNNING' AND t.backend_name = ANY(%(backends)s::text[]) AND (SELECT indexed FROM guard)
GROUP BY t.backend_name, t.queue_name, t.worker_ids ->> -1
UNION ALL
SELECT 'missing_index', NULL, NULL, NULL, NULL, NULL FROM guard WHERE NOT indexed
"""  # noqa: S608

# Orphan recovery: the operator's only writes. Each runs in its own short transaction on the probe's
# connection, which is read-only by default (CONFIGURE_SESSION): this statement opens the transaction for
# writing, so only these statements ever can write. The statement timeout applies.
READ_WRITE_TRANSACTION: Final = "SET TRANSACTION READ WRITE"

# The rows to recover are named by (queue, last worker id) for one backend, with a traceback line each.
# `status = 'RUNNING'` and the exact last worker id are checked by the UPDATE itself, so a row the worker
# finished (or another worker claimed) since the probe's reading is left alone: under READ COMMITTED, an
# UPDATE that waits for a concurrent writer re-checks its WHERE clause against the row's new version. The
# (backend_name, queue_name) lookup of RUNNING rows is served by the partial index RUNNING_INDEX.
_ORPHANED_ROWS: Final = """
FROM unnest(%(queues)s::text[], %(worker_ids)s::text[], %(tracebacks)s::text[])
    AS o (queue_name, worker_id, traceback)
WHERE t.status = 'RUNNING' AND t.backend_name = %(backend)s AND t.queue_name = o.queue_name
  AND t.worker_ids ->> -1 = o.worker_id
RETURNING t.id::text, o.worker_id
"""
# What django-tasks-db's `DBTaskResult.set_failed` writes, with `exception_class_path` a parameter.
FAIL_ORPHANS: Final = f"""
UPDATE {TASK_TABLE} AS t
SET status = 'FAILED', finished_at = now(), return_value = NULL,
    exception_class_path = %(exception_class_path)s, traceback = o.traceback
{_ORPHANED_ROWS}"""  # noqa: S608
# Back to what a freshly enqueued row has (`DBTaskResult.objects.ready()` sees it again); `worker_ids` keeps
# its history, as every claim appends to it.
REQUEUE_ORPHANS: Final = f"""
UPDATE {TASK_TABLE} AS t
SET status = 'READY', started_at = NULL
{_ORPHANED_ROWS}"""  # noqa: S608

# Wake-up on NOTIFY: the `django_taskpool` migration `0004_ready_notify_trigger` notifies the channel
# READY_CHANNEL_PREFIX + backend_name, payload the queue name, when rows become READY. The listener issues
# `LISTEN "<channel>"` (an identifier, quoted by psycopg) on its own connection.
READY_CHANNEL_PREFIX: Final = "taskpool_ready."
