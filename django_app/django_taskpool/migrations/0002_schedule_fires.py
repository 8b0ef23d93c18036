"""The scheduler's fires table (django_taskpool.models.ScheduleFire): its unique (schedule, fire_time) key
makes every fire enqueue its task once, however many schedulers run."""

from django.db import migrations, models
from django.db.models.functions import Now


class Migration(migrations.Migration):
    dependencies = (("django_taskpool", "0001_probe_indexes"),)

    operations = (
        migrations.CreateModel(
            name="ScheduleFire",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("schedule", models.CharField(max_length=100)),
                ("fire_time", models.DateTimeField()),
                ("recorded_at", models.DateTimeField(db_default=Now())),
                (
                    "task_result_id",
                    models.CharField(
                        blank=True,
                        help_text="The enqueued task's id; empty for a skipped fire.",
                        max_length=64,
                        null=True,
                    ),
                ),
                (
                    "missed",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Fires given up by this decision, this one too when it has no task.",
                    ),
                ),
            ],
            options={
                "db_table": "taskpool_schedule_fire",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("schedule", "fire_time"), name="taskpool_schedule_fire_unique"
                    )
                ],
            },
        ),
    )
