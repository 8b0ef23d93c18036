"""django-taskpool: the worker runtime for django-tasks-db (never imports kopf)."""

__version__ = "0.1.0"
