"""JSON endpoints: enqueue a burst of tasks, read one task, read counts per queue and status."""

from __future__ import annotations

import datetime
import json

from django.db.models import Count
from django.http import HttpRequest, JsonResponse
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_tasks_db.models import DBTaskResult

from taskpool_demo.bursts import BadRequest, enqueue_burst, parse_burst


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@csrf_exempt
@require_POST
def burst(request: HttpRequest) -> JsonResponse:
    """POST {"task": kind, "count", "queue", "duration", "priority", "run_after", "failure_rate"}."""
    try:
        parsed = parse_burst(json.loads(request.body or b"{}"))
    except json.JSONDecodeError as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    except (BadRequest, InvalidTask) as exc:
        return _error(400, str(exc))
    ids = enqueue_burst(parsed)
    return JsonResponse(
        {"enqueued": len(ids), "task": parsed.task.module_path, "queue": parsed.task.queue_name, "ids": ids},
        status=201,
    )


def _isoformat(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@require_GET
def task_detail(request: HttpRequest, task_id: str) -> JsonResponse:
    try:
        result = default_task_backend.get_result(task_id)
    except TaskResultDoesNotExist:
        return _error(404, f"no task with id {task_id}")
    return JsonResponse(
        {
            "id": str(result.id),
            "task": result.task.module_path,
            "queue": result.task.queue_name,
            "priority": result.task.priority,
            "status": result.status.value,
            "enqueued_at": _isoformat(result.enqueued_at),
            "run_after": _isoformat(result.task.run_after),
            "started_at": _isoformat(result.started_at),
            "finished_at": _isoformat(result.finished_at),
            "worker_ids": list(result.worker_ids),
            "return_value": result.return_value if result.status == TaskResultStatus.SUCCESSFUL else None,
            "errors": [
                {"exception_class_path": error.exception_class_path, "traceback": error.traceback}
                for error in result.errors
            ],
        }
    )


@require_GET
def counts(request: HttpRequest) -> JsonResponse:
    """Counts per queue and status (every status present, zeros included), and totals per status."""
    statuses = [status.value for status in TaskResultStatus]
    queues: dict[str, dict[str, int]] = {
        name: dict.fromkeys(statuses, 0) for name in sorted(default_task_backend.queues)
    }
    totals = dict.fromkeys(statuses, 0)
    rows = DBTaskResult.objects.values_list("queue_name", "status").annotate(n=Count("id")).order_by()
    for queue_name, status, n in rows:
        queues.setdefault(queue_name, dict.fromkeys(statuses, 0))[status] = n
        totals[status] += n
    return JsonResponse({"queues": queues, "totals": totals})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
