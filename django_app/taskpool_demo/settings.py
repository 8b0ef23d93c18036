"""Settings of the demo project, configured from the environment.

Required: `DATABASE_URL` (a PostgreSQL URL). Optional: `DJANGO_DEBUG=1`, `DJANGO_SECRET_KEY`,
`DJANGO_ALLOWED_HOSTS` (comma list), `DJANGO_LOG_LEVEL`, `TASKPOOL_DEMO_EMAIL_BACKEND` (console, locmem),
`TASKPOOL_DEMO_TIME_LIMITS` (JSON for the `TASKPOOL_TIME_LIMITS` setting, used by tests and benchmarks),
`TASKPOOL_DEMO_RETRIES` (JSON for the `TASKPOOL_RETRIES` setting, likewise),
`TASKPOOL_DEMO_SCHEDULES` (JSON of TASKPOOL_SCHEDULES, replacing the demo's own schedules).
"""

import json
import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def _database_from_env() -> dict[str, object]:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set: export DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    try:
        config = dj_database_url.parse(url, conn_max_age=600, conn_health_checks=True)
    except ValueError as exc:  # never echo the URL: it may carry a password
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if config.get("ENGINE") != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_URL must be a postgresql:// URL (the task table lives in PostgreSQL)"
        )
    # Fail fast on an unreachable server instead of hanging in the TCP handshake.
    options = dict(config.get("OPTIONS") or {})
    options.setdefault("connect_timeout", 10)
    config["OPTIONS"] = options
    return dict(config)


DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "taskpool-demo-not-secret-set-DJANGO_SECRET_KEY-in-production"
)
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django_tasks_db",
    "django_taskpool",
    "taskpool_demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "taskpool_demo.urls"
WSGI_APPLICATION = "taskpool_demo.wsgi.application"

DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

TASKS = {
    "default": {
        "BACKEND": "django_taskpool.backend.DatabaseBackend",
        "QUEUES": ["default", "emails", "reports"],
    },
}

# Periodic tasks fired by `manage.py taskpool_scheduler` (django_taskpool.schedules describes the options).
TASKPOOL_SCHEDULES = {
    "heartbeat": {"task": "taskpool_demo.tasks.noop", "every": 60},
    "nightly-report": {
        "task": "taskpool_demo.tasks.build_report",
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "kwargs": {"duration": 1.0},
        "missed": "skip",
    },
}
if os.environ.get("TASKPOOL_DEMO_SCHEDULES"):
    try:
        TASKPOOL_SCHEDULES = json.loads(os.environ["TASKPOOL_DEMO_SCHEDULES"])
    except ValueError as exc:
        raise ImproperlyConfigured(f"TASKPOOL_DEMO_SCHEDULES is not valid JSON: {exc}") from None

_EMAIL_BACKENDS = {
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}
_email_backend = os.environ.get("TASKPOOL_DEMO_EMAIL_BACKEND", "console")
if _email_backend not in _EMAIL_BACKENDS:
    raise ImproperlyConfigured(
        f"TASKPOOL_DEMO_EMAIL_BACKEND must be one of {', '.join(_EMAIL_BACKENDS)}, not {_email_backend!r}"
    )
EMAIL_BACKEND = _EMAIL_BACKENDS[_email_backend]
TASKPOOL_TIME_LIMITS = json.loads(os.environ.get("TASKPOOL_DEMO_TIME_LIMITS") or "{}")
TASKPOOL_RETRIES = json.loads(os.environ.get("TASKPOOL_DEMO_RETRIES") or "{}")
DEFAULT_FROM_EMAIL = "taskpool-demo@example.com"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
