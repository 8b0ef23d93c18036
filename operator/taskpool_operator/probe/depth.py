"""What a pool asks the probe for and what it gets back (pure: no database, no psycopg).

The pool model, the metrics and the handlers import these types; only `probe.database` and `probe.hub`
talk to the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

ErrorReason = Literal["connect", "timeout", "missing_table", "missing_index", "query"]
ERROR_REASONS: Final[tuple[ErrorReason, ...]] = get_args(ErrorReason)
ALL_QUEUES: Final = "*"
MIGRATE_HINT: Final = (
    "run `python manage.py migrate` with this database (INSTALLED_APPS needs 'django_tasks_db' and "
    "'django_taskpool')"
)
# django-tasks-db's queue_name and backend_name columns are varchar(32).
NAME_MAX_LENGTH: Final = 32


class ProbeError(Exception):
    """A probe that could not read the queue depth. `reason` is one of `ERROR_REASONS` (a metric label):

    - `connect`: the DSN is invalid, or the server refused or did not answer (the message says which);
    - `timeout`: the query ran past the statement timeout;
    - `missing_table`: django-tasks-db's table (or one of its columns) is absent: migrations not applied;
    - `missing_index`: the `django_taskpool` migration that creates the probe's indexes is not applied;
    - `query`: anything else the server rejected (e.g. permission denied).

    The message is meant for users (events, status conditions) and never contains the password.
    """

    def __init__(self, reason: ErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: ErrorReason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"ProbeError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class ProbeTarget:
    """What one pool wants counted.

    `queues` lists queue names, or is `("*",)` for every queue of the backend except `exclude_queues` (the
    same rules as `db_worker --queue-name/--exclude-queues`). `cap` bounds the ready count: the most this pool
    can use, `ready_cap(max_replicas, tasks_per_replica)`. These rules are the only copy: the pool model
    turns a `ValueError` raised here into an invalid spec.
    """

    backend: str = "default"
    queues: tuple[str, ...] = ("default",)
    exclude_queues: tuple[str, ...] = ()
    cap: int = 1

    def __post_init__(self) -> None:
        if not self.queues:
            raise ValueError('queues must name at least one queue, or be ["*"] for every queue')
        if ALL_QUEUES in self.queues and len(self.queues) > 1:
            raise ValueError('queues must be either ["*"] or a list of queue names')
        if self.exclude_queues and not self.all_queues:
            raise ValueError('excludeQueues is only allowed together with queues ["*"]')
        for name in (self.backend, *self.queues, *self.exclude_queues):
            if not name or len(name) > NAME_MAX_LENGTH:
                raise ValueError(
                    f"backend and queue names must be 1 to {NAME_MAX_LENGTH} characters: {name!r}"
                )
        if self.cap < 1:
            raise ValueError(f"cap must be at least 1, got {self.cap}")

    @property
    def all_queues(self) -> bool:
        return self.queues == (ALL_QUEUES,)

    def selects(self, backend: str, queue: str) -> bool:
        """Whether a task on this backend and queue is one this pool's workers would claim."""
        if backend != self.backend:
            return False
        if self.all_queues:
            return queue not in self.exclude_queues
        return queue in self.queues


def ready_cap(max_replicas: int, tasks_per_replica: int) -> int:
    """The ready count beyond which a pool's decision cannot change: every slot busy, plus one."""
    return max_replicas * tasks_per_replica + 1


@dataclass(frozen=True)
class QueueDepth:
    """One queue as seen by one tick. `ready` is capped at the pool's cap."""

    backend: str
    queue: str
    ready: int
    running: int
    oldest_ready_age_seconds: float


@dataclass(frozen=True)
class WorkerTasks:
    """RUNNING rows of one queue whose last claim was by `worker_id` (None if the row has no worker id).

    `taskpool_operator.workers` maps a worker id to its pod (docs/contracts.md); rows whose pod no longer
    exists are orphans.
    """

    backend: str
    queue: str
    worker_id: str | None
    running: int


@dataclass(frozen=True)
class PoolDepth:
    """One pool's view of a tick: its queues (those it names; with `*`, every queue not excluded that has
    READY rows, due or not, or RUNNING rows), its RUNNING rows per worker id, and totals. `ready` is capped
    at the target's cap (at the cap, the true count may be higher); `oldest_ready_age_seconds` is 0 when
    nothing is ready. `probed_at` is `time.monotonic()` at the end of the query, to judge staleness; ages come
    from the database clock."""

    queues: tuple[QueueDepth, ...]
    running_by_worker: tuple[WorkerTasks, ...]
    ready: int
    running: int
    oldest_ready_age_seconds: float
    cap: int
    probed_at: float


Reading = PoolDepth | ProbeError
"""What the probe holds for a pool after a tick: its depth, or the error that tick hit."""


@dataclass(frozen=True)
class OrphanedRows:
    """RUNNING rows of `queue` whose last worker id is `worker_id`, to recover; `traceback` is what a failed
    row gets."""

    queue: str
    worker_id: str
    traceback: str


@dataclass(frozen=True)
class OrphanRecovery:
    """One batch of orphaned rows of a backend: `Fail` marks them FAILED with `exception_class_path`,
    `Requeue` makes them READY again."""

    action: Literal["Fail", "Requeue"]
    backend: str
    rows: tuple[OrphanedRows, ...]
    exception_class_path: str
