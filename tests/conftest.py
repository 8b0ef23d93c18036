"""Shared fixtures. Areas register their own fixture modules through `pytest_plugins`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devdb import postgres

pytest_plugins = ["tests.support.django_db", "tests.support.cluster", "tests.support.operator"]


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    """Admin DSN of the test PostgreSQL server (DATABASE_URL, or an embedded throwaway server)."""
    try:
        with postgres.postgres_server() as dsn:
            yield dsn
    except postgres.DatabaseUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def empty_database(postgres_admin_dsn: str) -> Iterator[str]:
    """DSN of a fresh, empty database, dropped after the test."""
    dsn = postgres.create_database(postgres_admin_dsn)
    yield dsn
    postgres.drop_database(postgres_admin_dsn, dsn)
