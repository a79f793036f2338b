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


def _succeed(client: Client, **fields) -> Prediction:
    """Upload a photo as ``client`` and mark its prediction ``succeeded`` with ``fields`` (nike at 0.9 by default)."""
    post_photo(client)
    prediction = Prediction.objects.get()
    values = {"status": "succeeded", "brand": "nike", "brands": [{"name": "nike", "probability": 0.9}], **fields}
    Prediction.objects.filter(id=prediction.id).update(**values)
    return prediction


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
    prediction = _succeed(
        client,
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
        {
            "username": "newbie",
            "email": "newbie@example.com",
            "password1": "a-long-pass-phrase-9",
            "password2": "a-long-pass-phrase-9",
        },
    )
    assert response.status_code == 302
    assert client.get("/").context["user"].username == "newbie"


@pytest.mark.parametrize(
    ("abstain", "heading"),
    [
        ({"reason": "low_confidence", "score": 0.41}, "Not sure which brand this is"),
        ({"reason": "unknown_brand", "score": -3.2}, "A brand we don't carry"),
    ],
)
def test_an_abstention_says_so_plainly_and_shows_the_guesses_as_candidates(abstain, heading):
    client = Client()
    prediction = _succeed(
        client,
        brand="",
        abstain=abstain,
        brands=[{"name": "nike", "probability": 0.41}, {"name": "adidas", "probability": 0.39}],
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert heading in html and "Best guesses" in html and "Candidates, not an answer" in html
    assert "Nike" in html and "41%" in html
    assert 'class="bars"' not in html  # candidates, not bars that read like an answer


def test_a_photo_refused_as_not_a_sneaker_shows_no_brand_guesses_and_no_price():
    client = Client()
    prediction = _succeed(
        client,
        brand="",
        abstain={"reason": "not_footwear", "score": 0.02},
        brands=[{"name": "adidas", "probability": 0.85}, {"name": "nike", "probability": 0.1}],
        price_estimate_usd=90,
        price_low_usd=70,
        price_high_usd=120,
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "This doesn't look like a sneaker" in html
    assert "Adidas" not in html and "85%" not in html and "Best guesses" not in html and "$90" not in html
    assert "Wrong answer?" not in html  # nothing to correct


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
    candidates = [
        {"name": "New Balance 550", "brand": "new-balance", "probability": 0.81},
        {"name": "New Balance 574", "brand": "new-balance", "probability": 0.12},
    ]
    prediction = _succeed(
        client,
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


def test_the_answer_comes_first_and_engineers_words_sit_in_the_details_disclosure():
    client = Client()
    prediction = _succeed(client, background_method="u2netp", timings_ms={"total": 1212.0}, price_estimate_usd=120)
    Prediction.objects.filter(id=prediction.id).update(price_low_usd=90, price_high_usd=150)
    html = client.get(f"/p/{prediction.id}/").content.decode()
    answer, rest = html.split('<section class="answer card"', 1)[1].split("</section>", 1)
    assert "<h1>Nike</h1>" in answer and "$120" in answer and "estimated price" in answer
    details = html.split('<details class="tech">', 1)[1]
    assert "u2netp" in details and "1212 ms" in details
    assert "background: u2netp" not in html and "· 1212 ms" not in html


@pytest.mark.parametrize(
    ("code", "title", "blames_the_photo"),
    [
        ("image_unreadable", "We could not read this photo", True),
        ("model_unavailable", "Recognition is not available right now", False),
        ("worker_lost", "Something went wrong on our side", False),
        ("transient_error", "Something went wrong on our side", False),
        ("internal_error", "Something went wrong on our side", False),
        ("upload_missing", "We lost your photo", False),
    ],
)
def test_a_failed_result_is_worded_by_its_error_code(code, title, blames_the_photo):
    client = Client()
    post_photo(client)
    prediction = Prediction.objects.get()
    Prediction.objects.filter(id=prediction.id).update(status="failed", error_code=code, error_message="msg")
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert f"<h1>{title}</h1>" in html
    assert ("Try another photo" in html) is blames_the_photo
    assert ("Your photo is fine" in html) is (code not in ("image_unreadable", "upload_missing"))
    history = client.get("/history/").content.decode()
    assert ("Photo not readable" if blames_the_photo else "Not identified: our error") in history
    assert ">failed<" not in history


def test_the_pixel_limit_reads_in_megapixels_in_the_hint_and_in_the_error(settings):
    settings.SNEAKERS_UPLOAD_MAX_PIXELS = 1_500_000
    client = Client()
    assert "1.5 megapixels" in client.get("/").content.decode()
    html = post_photo(client, data=image_bytes(size=(1300, 1200))).content.decode()
    assert "The image has 1300 x 1200 pixels (1.6 megapixels); the limit is 1.5 megapixels." in html
    assert "1500000 pixels" not in html


def test_a_pending_result_has_a_taking_longer_notice_for_its_script():
    client = Client()
    post_photo(client)
    html = client.get(f"/p/{Prediction.objects.get().id}/").content.decode()
    assert 'id="slow"' in html and "taking longer than usual" in html and 'data-slow-after="8"' in html
    assert "Status: queued" not in html and "Waiting in line" in html


def test_a_correction_is_stored_with_the_right_brand_and_model():
    from catalog.models import Brand, Product
    from predictions.models import Feedback

    adidas = Brand.objects.create(slug="adidas", name="adidas")
    nike = Brand.objects.create(slug="nike", name="Nike")
    samba = Product.objects.create(brand=adidas, name="adidas Samba", kind="model", price_usd=90)
    cortez = Product.objects.create(brand=nike, name="Nike Cortez", kind="model")
    client = Client()
    prediction = _succeed(client)
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "Wrong answer? Tell us" in html and f'<option value="{samba.id}">adidas Samba</option>' in html

    url = f"/p/{prediction.id}/feedback/"
    client.post(url, {"kind": "wrong_model", "brand": "adidas", "model": str(cortez.id)})  # model of another brand
    client.post(url, {"kind": "wrong_model", "brand": "adidas"})  # no model picked
    client.post(url, {"kind": "sideways", "brand": "adidas"})
    assert Feedback.objects.count() == 0
    assert Client().post(url, {"kind": "wrong_brand", "brand": "adidas"}).status_code == 404  # not theirs

    response = client.post(url, {"kind": "wrong_brand", "brand": "adidas", "model": str(samba.id), "note": "Samba OG"})
    assert response["Location"] == f"/p/{prediction.id}/#feedback"
    feedback = Feedback.objects.get()
    assert (feedback.kind, feedback.brand, feedback.product, feedback.note) == (
        "wrong_brand",
        adidas,
        samba,
        "Samba OG",
    )
    html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "You told us: wrong brand, it is adidas adidas Samba" in html and "Wrong answer? Tell us" not in html


def test_a_result_that_is_not_finished_cannot_be_corrected():
    from catalog.models import Brand
    from predictions.models import Feedback

    Brand.objects.create(slug="vans", name="Vans")
    client = Client()
    post_photo(client)
    client.post(f"/p/{Prediction.objects.get().id}/feedback/", {"kind": "wrong_brand", "brand": "vans"})
    assert Feedback.objects.count() == 0


def test_brand_names_are_read_once_per_page(django_assert_max_num_queries):
    from catalog.models import Brand

    for slug, name in (("nike", "Nike"), ("new-balance", "New Balance"), ("asics", "ASICS")):
        Brand.objects.create(slug=slug, name=name)
    client = Client()
    brands = [{"name": s, "probability": p} for s, p in (("nike", 0.5), ("new-balance", 0.3), ("asics", 0.2))]
    similar = [
        {"product_id": i, "name": f"Shoe {i}", "brand": "asics", "price_usd": None, "score": 0.9, "image_url": None}
        for i in range(5)
    ]
    prediction = _succeed(client, brands=brands, similar=similar)
    with django_assert_max_num_queries(12) as queries:
        html = client.get(f"/p/{prediction.id}/").content.decode()
    assert "New Balance" in html and "ASICS" in html
    name_reads = [q for q in queries.captured_queries if '"catalog_brand"."slug" AS "slug"' in q["sql"]]
    assert len(name_reads) == 1  # not one per brand shown (h1, guesses, bars, similar products, the form)
