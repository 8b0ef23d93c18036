"""A trigger that tells listeners the moment a task becomes READY: `pg_notify` on the channel
`taskpool_ready.<backend_name>` with the queue name as payload.

Two statement-level triggers (AFTER INSERT, AFTER UPDATE) read the statement's transition table, so a bulk
enqueue costs one `pg_notify` per distinct (backend, queue) it touched, not one per row; PostgreSQL also
folds identical notifications of one transaction into one. UPDATE covers a row made READY again (a requeue,
a retry, the operator's orphan recovery). Listeners (the operator's probe hub, `taskpool_worker --notify`)
only use it to wake early: polling stays their fallback, so a lost notification costs at most one interval.

Notifications are delivered when the enqueuing transaction commits. PostgreSQL only: on other databases the
migration records itself and does nothing. The channel name is a contract with
`taskpool_operator.probe.sql.READY_CHANNEL_PREFIX` and `django_taskpool.wakeup`.
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

FUNCTION = "taskpool_notify_ready"
TRIGGERS = {"taskpool_ready_notify_insert": "INSERT", "taskpool_ready_notify_update": "UPDATE"}


def create_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table)
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('taskpool_ready.' || ready.backend_name, ready.queue_name)
            FROM (SELECT DISTINCT backend_name, queue_name FROM taskpool_new_rows WHERE status = 'READY')
                AS ready;
            RETURN NULL;
        END
        $$
        """  # noqa: S608 - only module constants are interpolated
    )
    for name, event in TRIGGERS.items():
        schema_editor.execute(
            f"CREATE TRIGGER {schema_editor.quote_name(name)} AFTER {event} ON {table}"
            f" REFERENCING NEW TABLE AS taskpool_new_rows FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def drop_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table)
    for name in TRIGGERS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {schema_editor.quote_name(name)} ON {table}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    # On the integration branch this follows the scheduler's migrations (see the lead's merge note).
    dependencies = (("django_taskpool", "0001_probe_indexes"),)

    operations = (migrations.RunPython(create_trigger, drop_trigger, elidable=False),)
