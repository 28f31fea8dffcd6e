"""The monitoring dashboard in the Django admin (issue 12): read from stored data only.

``fleet`` (workers, queue depths, dead letters), ``activity`` (per-minute counts, running tasks,
recent failures), ``story`` (one task's events and workflow), ``retry`` (re-send a failed task),
``charts`` (inline SVG), ``results`` (the task results list: cheap filters, search and counts),
``views`` (the pages; admin.py mounts them). Every query is bounded by a window, a LIMIT or an
index, so the pages stay fast with millions of results (bench/admin_million.py).
"""
