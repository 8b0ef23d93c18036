"""The scheduler's table: one row per fire of a schedule, the guarantee that a fire is enqueued once."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class ScheduleFire(models.Model):
    """A fire of a periodic task. The unique (schedule, fire_time) key is inserted in the transaction that
    enqueues the task, so however many schedulers run, and wherever one crashes, a fire is enqueued once or
    not at all (and then tried again)."""

    schedule = models.CharField(max_length=100)
    fire_time = models.DateTimeField()
    recorded_at = models.DateTimeField(db_default=Now())
    task_result_id = models.CharField(
        max_length=64, null=True, blank=True, help_text="The enqueued task's id; empty for a skipped fire."
    )
    missed = models.PositiveIntegerField(
        default=0, help_text="Fires given up by this decision, this one too when it has no task."
    )

    class Meta:
        db_table = "taskpool_schedule_fire"
        constraints = (
            models.UniqueConstraint(fields=("schedule", "fire_time"), name="taskpool_schedule_fire_unique"),
        )

    def __str__(self) -> str:
        return f"{self.schedule} at {self.fire_time.isoformat()}"
