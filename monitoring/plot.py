"""A PNG timeline of a pool: ready and running tasks above, replicas below (what `make demo` ends with).

`samples` is plain data so a demo can collect it from anywhere (the operator's metrics, Prometheus, the
database): one mapping per observation with

- `t`: seconds since the start (float, non-decreasing),
- `ready`, `running`: task counts,
- `replicas`: current worker replicas,
- optional `desired` and `max_replicas`: the operator's target and the pool's limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

REQUIRED = ("t", "ready", "running", "replicas")
OPTIONAL = ("desired", "max_replicas")


def _column(samples: Sequence[Mapping[str, float]], key: str) -> list[float]:
    values = []
    for index, sample in enumerate(samples):
        value = sample[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"sample {index}: {key!r} must be a number, got {value!r}")
        values.append(float(value))
    return values


def validate(samples: Sequence[Mapping[str, float]]) -> None:
    """Raise ValueError naming the first bad sample: missing keys, non-numbers, or time going backwards."""
    if not samples:
        raise ValueError("no samples to plot")
    for index, sample in enumerate(samples):
        missing = [key for key in REQUIRED if key not in sample]
        if missing:
            raise ValueError(f"sample {index} lacks {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    for key in (*REQUIRED, *OPTIONAL):
        if all(key in sample for sample in samples):
            _column(samples, key)
    times = _column(samples, "t")
    for index in range(1, len(times)):
        if times[index] < times[index - 1]:
            raise ValueError(
                f"sample {index}: t={times[index]} goes back in time (previous {times[index - 1]})"
            )


def plot_timeline(
    samples: Sequence[Mapping[str, float]], path: str | Path, title: str = "taskpool demo"
) -> Path:
    """Write the timeline PNG to `path` (parent folders are created) and return the path."""
    validate(samples)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    times = _column(samples, "t")

    figure = Figure(figsize=(10, 6), dpi=120, layout="constrained")
    tasks_axes, replicas_axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    tasks_axes.plot(times, _column(samples, "ready"), color="tab:orange", linewidth=2, label="ready tasks")
    tasks_axes.plot(times, _column(samples, "running"), color="tab:blue", linewidth=2, label="running tasks")
    tasks_axes.set_ylabel("tasks")
    tasks_axes.set_ylim(0, max(1.0, *(max(line.get_ydata()) for line in tasks_axes.get_lines())) * 1.2)
    tasks_axes.set_title(title)

    replicas_axes.step(
        times, _column(samples, "replicas"), where="post", color="tab:green", linewidth=2, label="replicas"
    )
    if all("desired" in s for s in samples):
        replicas_axes.step(
            times,
            _column(samples, "desired"),
            where="post",
            color="tab:green",
            linestyle="--",
            label="desired",
        )
    if all("max_replicas" in s for s in samples):
        replicas_axes.step(
            times, _column(samples, "max_replicas"), where="post", color="tab:red", linestyle=":", label="max"
        )
    replicas_axes.set_ylabel("replicas")
    # Headroom above the highest line keeps the legend off the max-replicas line.
    highest = max(max(line.get_ydata()) for line in replicas_axes.get_lines())
    replicas_axes.set_ylim(0, max(1.0, highest) * 1.45)
    replicas_axes.yaxis.get_major_locator().set_params(integer=True)
    replicas_axes.set_xlabel("seconds since start")

    for axes in (tasks_axes, replicas_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(loc="upper right", ncols=3)
        axes.set_xlim(times[0], max(times[-1], times[0] + 1))
    figure.savefig(target, format="png")
    return target
