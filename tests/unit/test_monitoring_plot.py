"""monitoring.plot: the demo's timeline PNG."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.image import imread

from monitoring.plot import plot_timeline, validate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_run() -> list[dict[str, float]]:
    """A burst of 300 tasks: the backlog rises, the pool scales 0 -> 8, drains, then scales back to 0."""
    samples = []
    ready = 0.0
    replicas = 0
    for second in range(0, 240, 2):
        arriving = 12.0 if 10 <= second < 40 else 0.0
        desired = min(8, math.ceil(ready / 20)) if ready else (replicas if second < 150 else 0)
        replicas = desired if second % 6 == 0 else replicas
        running = min(ready, replicas * 2.0)
        ready = max(0.0, ready + arriving - running)
        samples.append(
            {
                "t": second,
                "ready": ready,
                "running": running,
                "replicas": replicas,
                "desired": desired,
                "max_replicas": 8,
            }
        )
    return samples


def test_writes_a_png_with_both_panels(tmp_path: Path) -> None:
    path = plot_timeline(synthetic_run(), tmp_path / "out" / "timeline.png")
    assert path == tmp_path / "out" / "timeline.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    height, width = image.shape[:2]
    assert (width, height) == (1200, 720)
    # Not a blank canvas: the coloured series are drawn (orange ready, blue running, green replicas).
    assert image[..., :3].std() > 0.05


def test_plots_without_the_optional_series(tmp_path: Path) -> None:
    samples = [{"t": t, "ready": 10 - t, "running": 1, "replicas": 1} for t in range(10)]
    assert plot_timeline(samples, tmp_path / "plain.png").stat().st_size > 10_000


def test_a_single_sample_still_plots(tmp_path: Path) -> None:
    assert plot_timeline([{"t": 0, "ready": 3, "running": 1, "replicas": 1}], tmp_path / "one.png").exists()


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "no samples"),
        ([{"t": 0, "ready": 1, "running": 0}], "sample 0 lacks replicas"),
        ([{"t": 0, "ready": "1", "running": 0, "replicas": 1}], "'ready' must be a number"),
        ([{"t": 0, "ready": 1, "running": 0, "replicas": True}], "'replicas' must be a number"),
        (
            [
                {"t": 5, "ready": 1, "running": 0, "replicas": 1},
                {"t": 4, "ready": 1, "running": 0, "replicas": 1},
            ],
            "sample 1: t=4.0 goes back in time",
        ),
    ],
)
def test_bad_samples_are_a_clear_error_and_write_nothing(
    tmp_path: Path, samples: list[dict[str, object]], message: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        validate(samples)  # type: ignore[arg-type]
    with pytest.raises((ValueError, TypeError), match=message):
        plot_timeline(samples, tmp_path / "bad.png")  # type: ignore[arg-type]
    assert not (tmp_path / "bad.png").exists()
