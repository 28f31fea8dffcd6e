from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]

# Prometheus scrapes /metrics (docs/monitoring.md, "Prometheus"). It needs prometheus_client:
# pip install -e ".[metrics]" (or django-taskq[metrics]); without it the project still starts,
# only /metrics is missing. The view checks nothing: in production mount it where only
# Prometheus reaches it, or use metrics_view_for_staff.
try:
    from django_taskq.metrics import metrics_view
except ImportError:
    pass
else:
    urlpatterns.append(path("metrics", metrics_view))
