from django.apps import AppConfig


class TaskpoolConfig(AppConfig):
    name = "django_taskpool"
    label = "django_taskpool"
    verbose_name = "Taskpool worker runtime"
