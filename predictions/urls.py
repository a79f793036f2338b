"""Site routes of the predictions app."""

from django.urls import path

from predictions import views

app_name = "predictions"

urlpatterns = [
    path("", views.upload_view, name="upload"),
    path("p/<uuid:prediction_id>/", views.detail_view, name="detail"),
    path("p/<uuid:prediction_id>/status/", views.status_view, name="status"),
    path("p/<uuid:prediction_id>/feedback/", views.feedback_view, name="feedback"),
    path("history/", views.history_view, name="history"),
]
