"""A trigger that tells listeners the moment a task becomes READY: `pg_notify` on the channel
`taskpool_ready.<backend_name>` with the queue name as payload.

Two row-level triggers whose WHEN clause PostgreSQL evaluates before calling anything: AFTER INSERT of a
READY row, and AFTER UPDATE OF status to READY from another status (a requeue, a retry, the operator's orphan
recovery). A worker's claim or finish never calls the function; PostgreSQL folds identical notifications of
one transaction into one, so a bulk enqueue delivers one per (backend, queue). (A statement-level trigger
with a transition table cost an enqueue more, and every claim and finish too: `benchmarks/notify_trigger.py`.)
Listeners (the operator's probe hub, `taskpool_worker --notify`) only use it to wake early: polling stays
their fallback, so a lost notification costs at most one interval.

Notifications are delivered when the enqueuing transaction commits. PostgreSQL only: on other databases the
migration records itself and does nothing. The channel name is a contract with
`taskpool_operator.probe.sql.READY_CHANNEL_PREFIX` and `django_taskpool.wakeup`.
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

FUNCTION = "taskpool_notify_ready"
# The WHEN clauses are evaluated without calling the function: a claim or a finish (the workers' own UPDATEs)
# pays nothing, and an enqueue one function call.
TRIGGERS = {
    "taskpool_ready_notify_insert": "AFTER INSERT",
    "taskpool_ready_notify_update": "AFTER UPDATE OF status",
}
CONDITIONS = {
    "taskpool_ready_notify_insert": "NEW.status = 'READY'",
    "taskpool_ready_notify_update": "NEW.status = 'READY' AND OLD.status IS DISTINCT FROM 'READY'",
}


def create_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("django_tasks_database", "DBTaskResult")._meta.db_table)
    schema_editor.execute(
        f"""
        CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('taskpool_ready.' || NEW.backend_name, NEW.queue_name);
            RETURN NULL;
        END
        $$
        """
    )
    for name, event in TRIGGERS.items():
        # Re-runnable (the migration's record may be gone while the trigger is not); atomic with the CREATE.
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {schema_editor.quote_name(name)} ON {table}")
        schema_editor.execute(
            f"CREATE TRIGGER {schema_editor.quote_name(name)} {event} ON {table}"
            f" FOR EACH ROW WHEN ({CONDITIONS[name]}) EXECUTE FUNCTION {FUNCTION}()"
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
    dependencies = (("django_taskpool", "0003_finished_index"),)

    operations = (migrations.RunPython(create_trigger, drop_trigger, elidable=False),)
