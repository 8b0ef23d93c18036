"""The demo Django project: tasks in several queues and a small JSON API to enqueue and inspect them."""
