"""The index retention prunes through (read by `django_taskpool.retention`).

`taskpool_finished_idx` (backend_name, queue_name, status, finished_at) WHERE status IN ('SUCCESSFUL',
'FAILED'): the scheduler deletes the finished rows of one queue and status older than the retention period
by reading this index from its oldest entry, so a batch costs what it deletes, however many rows are kept or
still to run; the oldest finished row of a queue is its first entry. Without it every batch scans the table.

Built like 0001's: `CREATE INDEX CONCURRENTLY` outside a transaction, never blocking workers; an invalid
leftover of an interrupted build is dropped and rebuilt; a no-op on databases other than PostgreSQL.
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

NAME = "taskpool_finished_idx"
DEFINITION = "(backend_name, queue_name, status, finished_at) WHERE status IN ('SUCCESSFUL', 'FAILED')"


def create_index(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT i.indisvalid FROM pg_index AS i WHERE i.indexrelid = to_regclass(%s)", [NAME])
        row = cursor.fetchone()
    quoted = schema_editor.quote_name(NAME)
    if row is not None and not row[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quoted} ON {table} {DEFINITION}")


def drop_index(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(NAME)}")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
    atomic = False

    dependencies = (("django_taskpool", "0002_schedule_fires"),)

    operations = (migrations.RunPython(create_index, drop_index, elidable=False),)
