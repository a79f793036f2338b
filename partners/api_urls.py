"""Partner API routes (batches, webhook endpoints), mounted under ``/api/v1/``."""

from django.urls import path

from partners.apis import (
    BatchCollectionApi,
    BatchDetailApi,
    WebhookCollectionApi,
    WebhookDeliveryListApi,
    WebhookDetailApi,
)

urlpatterns = [
    path("batches/", BatchCollectionApi.as_view(), name="batch-list"),
    path("batches/<uuid:batch_id>/", BatchDetailApi.as_view(), name="batch-detail"),
    path("webhooks/", WebhookCollectionApi.as_view(), name="webhook-list"),
    path("webhooks/<uuid:endpoint_id>/", WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<uuid:endpoint_id>/deliveries/", WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
]
