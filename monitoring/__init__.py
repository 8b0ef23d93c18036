"""taskpool's monitoring mixin: Grafana dashboards, Prometheus recording and alerting rules, and their docs.

Everything is generated from `monitoring.config`; `python -m monitoring` rewrites the committed outputs.
"""
