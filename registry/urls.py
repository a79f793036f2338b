"""Site routes of the model registry."""

from django.urls import path

from registry import views

app_name = "registry"

urlpatterns = [
    path("models/status.json", views.model_status_view, name="status"),
]
