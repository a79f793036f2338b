"""Monitoring API routes, included under ``/api/v1/`` by ``sneakers.urls``."""

from django.urls import path

from monitoring.apis import MonitorApi

urlpatterns = [path("monitor/", MonitorApi.as_view(), name="monitor")]
