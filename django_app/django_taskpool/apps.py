from django.apps import AppConfig


class TaskpoolConfig(AppConfig):
    name = "django_taskpool"
    label = "django_taskpool"
    verbose_name = "Taskpool worker runtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_taskpool import checks  # noqa: F401, PLC0415 - registers the schedule check
