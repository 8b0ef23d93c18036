"""Indexes the taskpool operator's queue probe needs on django-tasks-db's table.

- `taskpool_ready_queue_idx` (backend_name, queue_name, run_after, enqueued_at) WHERE status = 'READY': the
  probe counts ready tasks per queue up to a cap and finds the oldest one by reading only the first entries of
  this index, and enumerates the queues with ready tasks by seeking from one queue to the next.
- `taskpool_running_idx` (backend_name, queue_name) WHERE status = 'RUNNING': without it, counting RUNNING
  rows is a sequential scan that grows with every finished row kept in the table.

Both are partial, so they hold only unfinished tasks and stay small. They are built with
`CREATE INDEX CONCURRENTLY` outside a transaction (`atomic = False`), which never blocks workers enqueuing or
claiming tasks on a live table; an invalid leftover from an interrupted build is dropped and rebuilt.
PostgreSQL only: on other databases the migration records itself and does nothing (the operator supports
PostgreSQL only). The names and definitions are a contract with `taskpool_operator.probe.sql`.
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

INDEXES = {
    "taskpool_ready_queue_idx": "(backend_name, queue_name, run_after, enqueued_at) WHERE status = 'READY'",
    "taskpool_running_idx": "(backend_name, queue_name) WHERE status = 'RUNNING'",
}


def _is_postgresql(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def create_indexes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if not _is_postgresql(schema_editor):
        return
    table = schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table)
    for name, definition in INDEXES.items():
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid FROM pg_index AS i WHERE i.indexrelid = to_regclass(%s)", [name]
            )
            row = cursor.fetchone()
        if row is not None and not row[0]:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
        quoted = schema_editor.quote_name(name)
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quoted} ON {table} {definition}")


def drop_indexes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if not _is_postgresql(schema_editor):
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
    atomic = False

    dependencies = (("django_tasks_database", "0021_conditional_partial_index_ordering"),)

    operations = (migrations.RunPython(create_indexes, drop_indexes, elidable=False),)
