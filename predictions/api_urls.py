"""Prediction API routes, mounted under ``/api/v1/``."""

from django.urls import path

from predictions.apis import PredictionCollectionApi, PredictionDetailApi

urlpatterns = [
    path("predictions/", PredictionCollectionApi.as_view(), name="prediction-list"),
    path("predictions/<uuid:prediction_id>/", PredictionDetailApi.as_view(), name="prediction-detail"),
]
