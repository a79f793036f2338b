"""End to end: a refused upload's webhook goes through Redis to a real Celery worker process, which POSTs it to a
real receiver on 127.0.0.1 that fails once; Celery's retry (with backoff) delivers it. Needs PostgreSQL and Redis."""

from __future__ import annotations

import time

import pytest

from partners.models import WebhookDelivery
from partners.services import webhook_endpoint_create
from partners.signing import signature_verify
from tests.e2e.conftest import process_env, require_services, worker_process
from tests.partners.conftest import photo

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_retries_the_delivery_until_the_receiver_accepts(
    token_client, user, receiver, settings, tmp_path
):
    require_services()
    receiver.script[:] = [(500, {}, b"not yet"), (200, {}, b"thanks")]
    endpoint = webhook_endpoint_create(owner=user, url=receiver.url("/hooks/e2e"))
    env = process_env(
        tmp_path,
        tmp_path / "no-backbone.keras",
        settings.CELERY_BROKER_URL,
        SNEAKERS_WEBHOOK_ALLOW_PRIVATE="true",
        SNEAKERS_WEBHOOK_BACKOFF_SECONDS="1",
    )
    log_path = tmp_path / "worker.log"
    with worker_process(env, log_path, queues="default"):
        refused = token_client.post("/api/v1/predictions/", {"image": photo(data=b"%PDF-1.4")}, format="multipart")
        assert refused.status_code == 400
        deadline = time.monotonic() + 90
        delivery = None
        while time.monotonic() < deadline:
            delivery = WebhookDelivery.objects.filter(endpoint=endpoint).first()
            if delivery is not None and delivery.status != "pending":
                break
            time.sleep(0.5)

    assert delivery is not None and delivery.status == "succeeded", log_path.read_text()[-3000:]
    assert list(delivery.attempts.order_by("number").values_list("status_code", flat=True)) == [500, 200]
    assert [request.headers["sneakers-delivery-attempt"] for request in receiver.received] == ["1", "2"]
    for request in receiver.received:
        assert signature_verify(secret=endpoint.secret, body=request.body, header=request.headers["sneakers-signature"])
