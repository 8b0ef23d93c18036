"""The SQL of retention (PostgreSQL; `{table}` is the quoted table name). No Django import, so benchmarks and
tests can run the very statements the scheduler runs."""

QUEUES_WITH_FINISHED_ROWS = """
WITH RECURSIVE queues AS (
    (SELECT queue_name FROM {table} WHERE backend_name = %(backend)s AND status IN ('SUCCESSFUL', 'FAILED')
     ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue_name FROM {table} AS t
            WHERE t.backend_name = %(backend)s AND t.status IN ('SUCCESSFUL', 'FAILED')
              AND t.queue_name > queues.queue_name
            ORDER BY t.queue_name LIMIT 1)
    FROM queues WHERE queues.queue_name IS NOT NULL
)
SELECT queue_name FROM queues WHERE queue_name IS NOT NULL
"""

# `= ANY(ARRAY(...))`, not `IN (...)`: the ids are collected first and deleted through the primary key; with
# IN the planner hash-joins the batch against a sequential scan of the whole table.
PRUNE_BATCH = """
DELETE FROM {table} WHERE id = ANY(ARRAY(
    SELECT id FROM {table}
    WHERE backend_name = %(backend)s AND queue_name = %(queue)s AND status = %(status)s
      AND finished_at < %(cutoff)s
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
"""

OLDEST_FINISHED = """
SELECT EXTRACT(EPOCH FROM now() - min(finished_at)) FROM {table}
WHERE backend_name = %(backend)s AND queue_name = %(queue)s AND status = %(status)s
"""

# Fires older than the cutoff, except each schedule's newest (a scheduler resumes from it after a restart).
PRUNE_FIRES = """
DELETE FROM {table} WHERE id = ANY(ARRAY(
    SELECT f.id FROM {table} AS f
    WHERE f.fire_time < %(cutoff)s
      AND f.fire_time < (SELECT max(g.fire_time) FROM {table} AS g WHERE g.schedule = f.schedule)
    LIMIT %(limit)s
))
"""
