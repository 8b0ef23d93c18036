"""Database checks of the worker runtime: at start-up (clear errors) and for `/readyz`."""

from __future__ import annotations

from django.db import DatabaseError, connections, router
from django_tasks_db.models import DBTaskResult

from django_taskpool.outage import DATABASE_GONE, needs_a_human


class DatabaseNotUsable(Exception):
    """A database problem that waiting does not fix: the message says what and where, never a password."""


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


def check_usable(alias: str) -> None:
    """Returns when the database answers and holds the task table. Raises an outage (`DATABASE_GONE`, for
    the caller to wait out) or `DatabaseNotUsable` (a human must fix it: `outage.needs_a_human`, a missing
    table, any other database error). The connection is closed afterwards."""
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if DBTaskResult._meta.db_table not in connection.introspection.table_names():
            raise DatabaseNotUsable(_missing_table(alias))
    except DATABASE_GONE as exc:
        if needs_a_human(exc):
            raise DatabaseNotUsable(f"cannot use {_describe(alias)}: {_first_line(exc)}") from None
        raise
    except DatabaseError as exc:
        raise DatabaseNotUsable(f"cannot use {_describe(alias)}: {_first_line(exc)}") from None
    finally:
        connection.close()


def _missing_table(alias: str) -> str:
    return (
        f"the task table {DBTaskResult._meta.db_table} is missing in {_describe(alias)}: "
        "run `manage.py migrate` first"
    )


def database_problem(alias: str) -> str | None:
    """None when the database answers; else what is wrong (for `/readyz`). The connection is closed
    afterwards: callers are short-lived threads."""
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"cannot reach {_describe(alias)}: {_first_line(exc)}"
    finally:
        connection.close()
    return None
