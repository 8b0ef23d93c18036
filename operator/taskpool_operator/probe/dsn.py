"""DSN handling for the probe: one key per database, where a DSN points, and messages without its password.

Redaction works on the structure of what can carry the password, never by replacing its text wherever it
occurs (a password "p" must not turn "port 1 failed" into "***ort 1 failed"):

- a `password=...` pair of a key=value DSN;
- the password field of a URL's userinfo (`scheme://user:PASSWORD@host`);
- a whole token equal to the password (or its percent-encoding): a value libpq echoes back, quoted or bare,
  such as a piece of a URL whose password was not percent-encoded.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, quote_plus

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from taskpool_operator.probe.depth import ProbeError

REDACTED: Final = "***"
_KEY_VALUE_PASSWORD: Final = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_PASSWORD: Final = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")
# What can continue a word around a token: a password found inside a longer word is not that password.
_WORD: Final = r"[\w.\-]"


def normalize(dsn: str) -> str:
    """The DSN as sorted key=value pairs: the same database spelled as a URL or as key=value is one key.
    Raises `ProbeError("connect")` for a DSN that cannot be parsed."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ProbeError("connect", f"invalid database URL: {first_line(exc, dsn)}") from None
    # libpq checks ports only when connecting, and its message would quote the value: in a URL whose
    # password was not percent-encoded, that value can be a piece of the password.
    if not all(port.strip().isdigit() for port in str(params.get("port") or "0").split(",")):
        raise ProbeError(
            "connect", "invalid database URL: the port is not a number (percent-encode the password)"
        )
    return make_conninfo("", **{name: params[name] for name in sorted(params) if params[name] is not None})


def describe(dsn: str) -> str:
    """Where a DSN points, for messages: `database <dbname> at <user>@<host>:<port>`, never the password."""
    params = conninfo_to_dict(dsn)
    user = str(params.get("user") or "")
    host = str(params.get("host") or "localhost")
    port = params.get("port")
    dbname = params.get("dbname") or user
    location = f"{host}:{port}" if port else host
    return f"database {dbname} at {user + '@' if user else ''}{location}"


def _password(dsn: str) -> str | None:
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        # An unparseable URL: its password is still the userinfo's second field.
        match = _URL_PASSWORD.search(dsn)
        password = match.group(2) if match else None
    return str(password) if password else None


def redact(text: str, dsn: str) -> str:
    """`text` without the DSN's password: see the module docstring for what is redacted."""
    text = _KEY_VALUE_PASSWORD.sub(rf"\1{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}\3", text)
    password = _password(dsn)
    if password is None:
        return text
    spellings = sorted({password, quote(password, safe=""), quote_plus(password)}, key=len, reverse=True)
    tokens = "|".join(re.escape(spelling) for spelling in spellings)
    return re.sub(rf"(?<!{_WORD})(?:{tokens})(?!{_WORD})", REDACTED, text)


def first_line(exc: BaseException, dsn: str) -> str:
    """The first line of an exception's message, redacted: what a user sees of a database error."""
    message = str(exc).strip()
    first = message.splitlines()[0].strip() if message else type(exc).__name__
    return redact(first, dsn)
