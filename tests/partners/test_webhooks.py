"""Webhooks: endpoints through the API, signed deliveries to a real receiver on 127.0.0.1, retries, attempts,
the address rules, and signature verification (replays refused)."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model

from partners.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from partners.services import webhook_endpoint_create
from partners.signing import SignatureError, signature_header, signature_verify
from partners.tasks import deliver_webhook
from predictions.models import Prediction
from predictions.services import prediction_mark_failed
from tests.partners.conftest import assert_error

pytestmark = pytest.mark.django_db


def finish_failed(prediction: Prediction, capture) -> None:
    """End ``prediction`` as failed and run the after-commit callbacks (signal, delivery enqueue: not sent)."""
    with capture(execute=True):
        prediction_mark_failed(prediction_id=prediction.id, code="worker_lost", message="The worker died.")


@pytest.fixture
def no_broker(monkeypatch):
    """Enqueueing a delivery records the ids instead of talking to a broker; tests run the task themselves."""
    sent = []
    monkeypatch.setattr("sneakers.celery.app.send_task", lambda name, args=(), **kw: sent.append((name, args)))
    return sent


def test_an_endpoint_shows_its_secret_once(token_client, receiver):
    created = token_client.post(
        "/api/v1/webhooks/", {"url": receiver.url("/hook"), "events": ["prediction.failed"]}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) == 6 + 64
    assert body["secret_hint"] == f"whsec_…{body['secret'][-4:]}"
    assert created["Location"] == body["detail_url"]

    shown = token_client.get(body["detail_url"]).json()
    listed = token_client.get("/api/v1/webhooks/").json()
    assert "secret" not in shown and all("secret" not in item for item in listed["results"])
    assert listed["count"] == 1 and shown["events"] == ["prediction.failed"]

    rolled = token_client.patch(body["detail_url"], {"roll_secret": True}, format="json").json()
    assert rolled["secret"] != body["secret"]
    assert WebhookEndpoint.objects.get(id=body["id"]).secret == rolled["secret"]


def test_endpoints_of_other_partners_are_404(token_client, other_token_client, receiver):
    url = token_client.post("/api/v1/webhooks/", {"url": receiver.url("/hook")}, format="json").json()["detail_url"]
    assert_error(other_token_client.get(url), 404, "not_found")
    assert_error(other_token_client.delete(url), 404, "not_found")
    assert token_client.delete(url).status_code == 204
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/",
    ],
)
def test_private_addresses_are_refused_at_registration(token_client, settings, url):
    settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE = False
    assert_error(token_client.post("/api/v1/webhooks/", {"url": url}, format="json"), 400, "webhook_url_private")


def test_bad_urls_and_events_are_refused(token_client, receiver):
    assert_error(
        token_client.post("/api/v1/webhooks/", {"url": "ftp://example.com/x"}, format="json"),
        400,
        "webhook_url_invalid",
    )
    assert_error(
        token_client.post("/api/v1/webhooks/", {"url": receiver.url("/h"), "events": ["nope"]}, format="json"),
        400,
        "invalid",
    )


def test_a_failed_prediction_is_delivered_signed_and_retried_until_the_receiver_accepts(
    user, receiver, no_broker, django_capture_on_commit_callbacks
):
    receiver.script[:] = [(500, {}, b"busy"), (204, {}, b"")]
    endpoint = webhook_endpoint_create(owner=user, url=receiver.url("/hooks/sneakers"))
    prediction = Prediction.objects.create(owner=user, channel="api", title="Nike Dunk Low")

    finish_failed(prediction, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert no_broker == [("partners.tasks.deliver_webhook", [str(delivery.id)])]
    result = deliver_webhook.apply(args=[str(delivery.id)])  # eager: the retry runs at once, without the wait

    assert result.get() == "succeeded"
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempt_count == 2 and delivery.finished_at
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 204)]
    assert attempts[0].error == "Answered HTTP 500." and attempts[0].response_excerpt == "busy"
    assert attempts[1].error == "" and all(a.duration_ms >= 0 for a in attempts)

    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first.body == second.body  # the same bytes at every try
    for request, number in ((first, "1"), (second, "2")):
        assert request.path == "/hooks/sneakers"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["sneakers-delivery-attempt"] == number
        assert signature_verify(secret=endpoint.secret, body=request.body, header=request.headers["sneakers-signature"])
    event = json.loads(second.body)
    assert event["type"] == "prediction.failed" and event["id"] == second.headers["sneakers-event-id"]
    assert event["data"]["object"]["id"] == str(prediction.id)
    assert event["data"]["object"]["error"] == {"code": "worker_lost", "message": "The worker died."}
    assert event["data"]["object"]["title"] == "Nike Dunk Low"
    assert event["data"]["object"]["url"] == f"http://localhost:8000/api/v1/predictions/{prediction.id}/"


def test_the_last_try_fails_the_delivery(user, receiver, no_broker, django_capture_on_commit_callbacks):
    receiver.script[:] = [(503, {}, b"down")]
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"))
    finish_failed(Prediction.objects.create(owner=user, channel="api"), django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()

    deliver_webhook.apply(args=[str(delivery.id)])

    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert delivery.attempt_count == deliver_webhook.max_retries + 1 == 8  # SNEAKERS_WEBHOOK_MAX_ATTEMPTS
    assert set(delivery.attempts.values_list("status_code", flat=True)) == {503}


def test_a_redirect_is_not_followed(user, receiver, no_broker, django_capture_on_commit_callbacks):
    receiver.script[:] = [(302, {"Location": receiver.url("/elsewhere")}, b""), (200, {}, b"ok")]
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"))
    finish_failed(Prediction.objects.create(owner=user, channel="api"), django_capture_on_commit_callbacks)

    deliver_webhook.apply(args=[str(WebhookDelivery.objects.get().id)])

    first = WebhookAttempt.objects.get(number=1)
    assert first.status_code == 302 and "redirect" in first.error
    assert [request.path for request in receiver.received] == ["/hook", "/hook"]  # never /elsewhere


def test_a_private_address_is_refused_at_delivery_without_retries(
    user, receiver, no_broker, settings, django_capture_on_commit_callbacks
):
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"))  # registered while allowed (a test setting)
    finish_failed(Prediction.objects.create(owner=user, channel="api"), django_capture_on_commit_callbacks)
    settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE = False

    deliver_webhook.apply(args=[str(WebhookDelivery.objects.get().id)])

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and delivery.attempt_count == 1
    assert "private" in delivery.attempts.get().error
    assert receiver.received == []


def test_web_uploads_and_other_partners_get_no_event(
    user, other_user, receiver, no_broker, django_capture_on_commit_callbacks
):
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"))
    finish_failed(Prediction.objects.create(owner=user, channel="web"), django_capture_on_commit_callbacks)
    finish_failed(Prediction.objects.create(owner=other_user, channel="api"), django_capture_on_commit_callbacks)
    assert not WebhookDelivery.objects.exists()


def test_an_endpoint_gets_only_the_events_it_asked_for(user, receiver, no_broker, django_capture_on_commit_callbacks):
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"), events=["prediction.succeeded"])
    finish_failed(Prediction.objects.create(owner=user, channel="api"), django_capture_on_commit_callbacks)
    assert not WebhookDelivery.objects.exists()


def test_deliveries_and_attempts_are_listed_for_the_partner(
    user, token_client, receiver, no_broker, django_capture_on_commit_callbacks
):
    receiver.script[:] = [(500, {}, b""), (200, {}, b"")]
    endpoint = webhook_endpoint_create(owner=user, url=receiver.url("/hook"))
    finish_failed(Prediction.objects.create(owner=user, channel="api"), django_capture_on_commit_callbacks)
    deliver_webhook.apply(args=[str(WebhookDelivery.objects.get().id)])

    page = token_client.get(f"/api/v1/webhooks/{endpoint.id}/deliveries/").json()

    [delivery] = page["results"]
    assert delivery["status"] == "succeeded" and delivery["event_type"] == "prediction.failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]


def test_admin_shows_deliveries_with_their_attempts(
    admin_client, user, receiver, no_broker, django_capture_on_commit_callbacks
):
    receiver.script[:] = [(500, {}, b"")]
    webhook_endpoint_create(owner=user, url=receiver.url("/hook"))
    finish_failed(Prediction.objects.create(owner=user, channel="api"), django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    from partners.services import webhook_delivery_attempt

    webhook_delivery_attempt(delivery_id=delivery.id)

    listing = admin_client.get("/admin/partners/webhookdelivery/")
    page = admin_client.get(f"/admin/partners/webhookdelivery/{delivery.id}/change/")
    assert listing.status_code == 200 and b"prediction.failed" in listing.content
    assert page.status_code == 200 and b"Answered HTTP 500." in page.content
    assert admin_client.get("/admin/partners/webhookendpoint/").status_code == 200


def test_signature_verification_refuses_tampering_other_secrets_and_replays():
    body = b'{"id":"evt_1","type":"prediction.succeeded"}'
    now = 1_764_692_411
    header = signature_header(secret="whsec_abc", body=body, timestamp=now)

    assert signature_verify(secret="whsec_abc", body=body, header=header, now=now + 299) == now
    for secret, sent, at in (
        ("whsec_abc", body + b" ", now),  # body changed
        ("whsec_other", body, now),  # another secret
        ("whsec_abc", body, now + 301),  # replayed after the tolerance
        ("whsec_abc", body, now - 301),  # from the future
    ):
        with pytest.raises(SignatureError):
            signature_verify(secret=secret, body=sent, header=header, now=at)
    with pytest.raises(SignatureError):
        signature_verify(secret="whsec_abc", body=body, header="v1=deadbeef")
    rolled = f"{header},v1={'0' * 64}"  # several v1 values while a secret is rolled: any match is enough
    assert signature_verify(secret="whsec_abc", body=body, header=rolled, now=now)


def test_the_documented_verification_example_accepts_a_real_delivery():
    """The Python example on /developers/ (copied from the page's text) verifies what the platform signs."""
    import re

    from django.test import Client

    get_user_model()  # the page needs the database for its base template
    html = Client().get("/developers/").content.decode()
    source = re.search(r"<pre>(import hashlib, hmac, time.*?)# e\.g\.", html, re.S).group(1)
    namespace: dict = {}
    exec(source.replace("&gt;", ">").replace("&lt;", "<").replace("&quot;", '"').replace("&#x27;", "'"), namespace)
    body = b'{"type":"batch.finished"}'
    header = signature_header(secret="whsec_doc", body=body)
    assert namespace["verify"]("whsec_doc", body, header) is True
    assert namespace["verify"]("whsec_doc", body + b"x", header) is False
    old = signature_header(secret="whsec_doc", body=body, timestamp=int(time.time()) - 3600)
    assert namespace["verify"]("whsec_doc", body, old) is False


def test_a_connection_that_reaches_a_private_address_sends_nothing(receiver, settings, monkeypatch):
    # DNS rebinding: the name passed the check, the socket reached a private address; the shared
    # catalog.downloads.PublicAddressAdapter refuses before a byte is sent, and the attempt reports why.
    from partners import delivery

    monkeypatch.setattr(delivery, "url_check", lambda url, **_: None)
    settings.SNEAKERS_WEBHOOK_ALLOW_PRIVATE = False
    result = delivery.webhook_post(url=receiver.url("/hook"), body=b"{}", headers={})
    assert result.status_code is None
    assert "private, loopback or reserved" in result.error
    assert receiver.received == []
