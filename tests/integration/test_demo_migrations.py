"""The demo project's migrations apply cleanly on an empty database and create the task table."""

from __future__ import annotations

import psycopg

from devdb import demo_project, postgres


def test_migrate_on_empty_database_creates_task_table(empty_database: str) -> None:
    demo_project.migrate(postgres.to_url(empty_database))
    with psycopg.connect(empty_database) as conn:
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'django_tasks_database_dbtaskresult'"
            )
        }
    assert "tasks_db_new_ordering_idx" in indexes


def test_migrated_database_fixture_has_applied_migrations(
    migrated_database: demo_project.MigratedDatabase,
) -> None:
    with psycopg.connect(migrated_database.url) as conn:
        apps = {row[0] for row in conn.execute("SELECT app FROM django_migrations")}
    assert "django_tasks_database" in apps
