"""Database checks of the worker runtime: at start-up (clear errors) and for `/readyz`."""

from __future__ import annotations

from django.db import DatabaseError, connections, router
from django_tasks_db.models import DBTaskResult


def database_alias() -> str:
    """The database the task table is read from (the project's database router decides)."""
    return router.db_for_write(DBTaskResult)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _describe(alias: str) -> str:
    """Where the database is, without credentials."""
    settings = connections[alias].settings_dict
    host = settings.get("HOST") or "localhost"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"database '{alias}' ({settings.get('NAME')} on {host}{port})"


def database_problem(alias: str, *, need_table: bool) -> str | None:
    """None when the database answers (and holds the task table, if asked); else what is wrong.
    The connection is closed afterwards: callers are short-lived threads or a process about to fork."""
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if need_table and DBTaskResult._meta.db_table not in connection.introspection.table_names():
            return (
                f"the task table {DBTaskResult._meta.db_table} is missing in {_describe(alias)}: "
                "run `manage.py migrate` first"
            )
    except DatabaseError as exc:
        return f"cannot reach {_describe(alias)}: {_first_line(exc)}"
    finally:
        connection.close()
    return None
