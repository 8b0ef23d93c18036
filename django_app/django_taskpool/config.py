"""What the supervisor hands to each worker process (pickled across the spawn, so no Django imports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoopOptions:
    """The options of django-tasks-db's worker loop (the same for every process) and of logging."""

    queue_names: list[str]
    excluded_queue_names: list[str]
    interval: float
    batch: bool
    backend_name: str
    startup_delay: bool
    max_tasks: int | None
    log_format: str
    verbosity: int
    time_limit: float | None = None  # the hard limit of tasks that set none (`--time-limit`)
    threads: int = 1  # copies of the loop per process (`--threads`), each with its own worker id
    notify: bool = False  # `--notify`: LISTEN for READY rows instead of only polling


@dataclass(frozen=True)
class WorkerConfig:
    """Everything one worker process needs; pickled to the spawned process."""

    index: int
    worker_ids: tuple[str, ...]  # one per thread
    heartbeat_paths: tuple[Path, ...]  # one per thread
    options: LoopOptions
