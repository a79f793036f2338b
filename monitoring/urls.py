"""Monitoring routes outside the API: Prometheus ``/metrics``."""

from django.urls import path

from monitoring.metrics import metrics_view

urlpatterns = [path("metrics", metrics_view, name="metrics")]
