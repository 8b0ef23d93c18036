"""URLs of the demo project: its JSON API only."""

from django.urls import path

from taskpool_demo import api

urlpatterns = [
    path("api/tasks/burst", api.burst, name="enqueue-burst"),
    path("api/tasks/<str:task_id>", api.task_detail, name="task-detail"),
    path("api/counts", api.counts, name="counts"),
    path("healthz", api.healthz, name="healthz"),
]
