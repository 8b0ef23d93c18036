"""The probe's DSN handling: one key per database, where it points, and redaction by structure."""

from __future__ import annotations

import pytest

from taskpool_operator.probe.depth import ProbeError
from taskpool_operator.probe.dsn import describe, normalize, redact

pytestmark = pytest.mark.unit


def test_a_short_password_does_not_mangle_the_message() -> None:
    """The old text replacement turned "port 1 failed" into "***ort 1 failed" for the password "p"."""
    dsn = "postgresql://app:p@db:1/app"
    message = 'connection to server at "db" (10.0.0.1), port 1 failed: Connection refused'
    assert redact(message, dsn) == message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('invalid value "s3cr3t" for option', 'invalid value "***" for option'),
        ("host=db password=s3cr3t dbname=app", "host=db password=*** dbname=app"),
        ("host=db password='s3 cr3t' dbname=app", "host=db password=*** dbname=app"),
        ("postgresql://app:s3cr3t@db/app", "postgresql://app:***@db/app"),
        ("the password s3cr3t, echoed", "the password ***, echoed"),
        ("s3cr3ts and xs3cr3t are other words", "s3cr3ts and xs3cr3t are other words"),
    ],
)
def test_the_password_is_redacted_where_it_stands_as_a_value(message: str, expected: str) -> None:
    assert redact(message, "postgresql://app:s3cr3t@db/app") == expected


def test_a_password_that_was_not_percent_encoded_is_redacted_in_the_pieces_libpq_echoes() -> None:
    dsn = "postgresql://app:p@ss@db/app"  # the user meant the password "p@ss"
    assert redact('could not translate host name "ss@db" to address', dsn) == (
        'could not translate host name "ss@db" to address'
    )  # libpq read the password "p": "ss@db" is a host name, not a secret
    assert redact('password "p" rejected', dsn) == 'password "***" rejected'


def test_percent_encoded_spellings_are_redacted() -> None:
    dsn = "postgresql://app:s3%2Fcr%40t@db/app"
    assert redact("got s3/cr@t and s3%2Fcr%40t", dsn) == "got *** and ***"


def test_the_same_database_spelled_two_ways_is_one_key() -> None:
    assert normalize("postgresql://app:pw@db:5432/app") == normalize(
        "host=db port=5432 dbname=app user=app password=pw"
    )


def test_a_port_that_is_not_a_number_is_refused_without_quoting_it() -> None:
    with pytest.raises(ProbeError) as caught:
        normalize("postgresql://app:pa/ss@db/app")  # libpq reads the port "pa" and the database "ss@db/app"
    assert caught.value.reason == "connect"
    assert caught.value.message == (
        "invalid database URL: the port is not a number (percent-encode the password)"
    )


def test_describe_never_has_the_password() -> None:
    assert describe("postgresql://app:s3cr3t@db:5433/shop") == "database shop at app@db:5433"
