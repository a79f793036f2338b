"""Site pages: upload, result, status JSON and history; visitors only see their own predictions."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from predictions.models import Prediction
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def post_photo(client: Client, data: bytes | None = None, name: str = "shoe.jpg"):
    return client.post("/", {"image": SimpleUploadedFile(name, data if data is not None else image_bytes())})


def test_upload_page_has_a_file_picker_with_csrf():
    client = Client(enforce_csrf_checks=True)
    html = client.get("/").content.decode()
    assert 'type="file"' in html and 'name="image"' in html and "csrfmiddlewaretoken" in html


def test_upload_redirects_to_the_result_page_which_polls_until_done():
    client = Client()
    response = post_photo(client)
    assert response.status_code == 302
    prediction = Prediction.objects.get()
    assert response["Location"] == f"/p/{prediction.id}/"
    assert prediction.channel == "web" and prediction.session_key and prediction.owner is None

    page = client.get(response["Location"]).content.decode()
    assert "Looking at your photo" in page and f"/p/{prediction.id}/status/" in page
    status = client.get(f"/p/{prediction.id}/status/").json()
    assert status == {
        "id": str(prediction.id),
        "status": "queued",
        "terminal": False,
        "error": None,
        "url": f"/p/{prediction.id}/",
    }


def test_a_succeeded_result_shows_brand_price_and_similar_products():
    client = Client()
    post_photo(client)
    prediction = Prediction.objects.get()
    Prediction.objects.filter(id=prediction.id).update(
        status="succeeded",
        brand="vans",
        brands=[{"name": "vans", "probability": 0.9}, {"name": "nike", "probability": 0.1}],
        price_estimate_usd=61,
        price_low_usd=50,
        price_high_usd=75,
        similar=[
            {"product_id": 1, "name": "Old Skool", "brand": "vans", "price_usd": 60.0, "score": 0.91, "image_url": None}
        ],
        timings_ms={"total": 812.0},
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "Vans" in html and "90%" in html and "$61" in html and "Old Skool" in html


def test_bad_upload_shows_a_readable_message_and_is_kept():
    client = Client()
    response = post_photo(client, data=b"GIF89a-but-not-really")
    assert response.status_code == 400
    assert 'role="alert">The file is not a readable image' in response.content.decode()
    assert Prediction.objects.get().status == "failed"


def test_no_file_is_a_readable_400():
    response = Client().post("/", {})
    assert response.status_code == 400 and "Choose one photo" in response.content.decode()


def test_another_visitor_gets_404_on_result_and_status_and_sees_an_empty_history():
    owner, stranger = Client(), Client()
    post_photo(owner)
    prediction = Prediction.objects.get()
    assert stranger.get(f"/p/{prediction.id}/").status_code == 404
    assert stranger.get(f"/p/{prediction.id}/status/").status_code == 404
    assert str(prediction.id) not in stranger.get("/history/").content.decode()
    assert str(prediction.id) in owner.get("/history/").content.decode()


def test_signed_in_user_owns_uploads_and_sees_them_from_another_session(user):
    first = Client()
    first.force_login(user)
    post_photo(first)
    prediction = Prediction.objects.get()
    assert prediction.owner == user and prediction.session_key == ""
    second = Client()
    second.force_login(user)
    assert second.get(f"/p/{prediction.id}/").status_code == 200


def test_signup_creates_an_account_and_signs_in():
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9"},
    )
    assert response.status_code == 302
    assert client.get("/").context["user"].username == "newbie"


@pytest.mark.parametrize(
    ("abstain", "heading"),
    [
        ({"reason": "not_footwear", "score": 0.02}, "This doesn't look like a sneaker"),
        ({"reason": "low_confidence", "score": 0.41}, "Not sure which brand this is"),
        ({"reason": "unknown_brand", "score": -3.2}, "A brand we don't carry"),
    ],
)
def test_an_abstention_says_so_plainly_and_still_shows_the_guesses(abstain, heading):
    client = Client()
    post_photo(client)
    prediction = Prediction.objects.get()
    Prediction.objects.filter(id=prediction.id).update(
        status="succeeded",
        brand="",
        abstain=abstain,
        brands=[{"name": "nike", "probability": 0.41}, {"name": "adidas", "probability": 0.39}],
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert heading in html and "Best guesses" in html and "Nike" in html and "41%" in html


def test_upload_without_the_csrf_token_is_refused():
    client = Client(enforce_csrf_checks=True)
    client.get("/")
    response = client.post("/", {"image": SimpleUploadedFile("a.jpg", image_bytes())})
    assert response.status_code == 403
    assert Prediction.objects.count() == 0


def test_stored_uploads_are_served_with_safe_content_types_and_nosniff():
    client = Client()
    post_photo(client, data=image_bytes("PNG"))
    post_photo(client, data=b"<script>alert(1)</script>", name="x.html")
    good, bad = Prediction.objects.order_by("created_at")
    served = client.get(good.image.url)
    assert served["Content-Type"] == "image/png" and served["X-Content-Type-Options"] == "nosniff"
    assert bad.image.name.endswith(".bin")  # refused bytes are kept, never under an executable name
    kept = client.get(bad.image.url)
    assert kept["Content-Type"] == "application/octet-stream" and kept["X-Content-Type-Options"] == "nosniff"


def test_a_result_names_the_shoe_model_with_brand_display_names_and_shows_candidates_when_not_sure():
    from catalog.models import Brand

    Brand.objects.create(slug="new-balance", name="New Balance")
    client = Client()
    post_photo(client)
    prediction = Prediction.objects.get()
    candidates = [
        {"name": "New Balance 550", "brand": "new-balance", "probability": 0.81},
        {"name": "New Balance 574", "brand": "new-balance", "probability": 0.12},
    ]
    Prediction.objects.filter(id=prediction.id).update(
        status="succeeded",
        brand="new-balance",
        brands=[{"name": "new-balance", "probability": 0.93}],
        shoe_model="New Balance 550",
        shoe_models=candidates,
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "<h1>New Balance</h1>" in html and '<p class="model-answer">New Balance 550</p>' in html
    assert "81%" in html and "New Balance 574" in html and "Model: not sure" not in html

    Prediction.objects.filter(id=prediction.id).update(shoe_model="")
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "Model: not sure" in html and "Candidates" in html and "model-answer" not in html
    assert "New Balance</strong>" in client.get("/history/").content.decode()  # not sure of the model: brand only
