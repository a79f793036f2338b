"""Accounts: sign-up with email, login/logout, password change and reset by email (Django's auth views and
email backend), uploads made before sign-up or login moving to the account, own results after logout."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from predictions.models import Prediction
from tests.api.test_site import post_photo

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-pass-phrase-9"


def signup(client: Client, username: str = "newbie", email: str = "newbie@example.com", **extra):
    return client.post(
        "/accounts/signup/",
        {"username": username, "email": email, "password1": PASSWORD, "password2": PASSWORD, **extra},
    )


def test_signup_asks_for_an_email_and_refuses_one_already_used(django_user_model):
    client = Client()
    assert 'type="email"' in client.get("/accounts/signup/").content.decode()
    assert signup(client, email="").status_code == 400
    assert signup(client).status_code == 302
    assert django_user_model.objects.get(username="newbie").email == "newbie@example.com"
    response = signup(Client(), username="other", email="NEWBIE@example.com")
    assert response.status_code == 400 and "already exists" in response.content.decode()


def test_uploads_made_before_signup_move_to_the_new_account_and_stay_reachable():
    client = Client()
    post_photo(client)
    post_photo(client)
    assert signup(client).status_code == 302
    predictions = list(Prediction.objects.all())
    assert len(predictions) == 2 and all(p.owner and p.owner.username == "newbie" for p in predictions)
    assert all(p.session_key == "" for p in predictions)
    history = client.get("/history/").content.decode()
    for prediction in predictions:
        assert str(prediction.id) in history
        assert client.get(f"/p/{prediction.id}/").status_code == 200


def test_uploads_made_before_login_move_to_the_account_but_never_another_browsers(user):
    mine, theirs = Client(), Client()
    post_photo(mine)
    post_photo(theirs)
    response = mine.post("/accounts/login/", {"username": user.username, "password": "pw-123-not-common"})
    assert response.status_code == 302
    assert Prediction.objects.filter(owner=user).count() == 1
    assert Prediction.objects.filter(owner__isnull=True).count() == 1  # the other browser's stays anonymous


def test_after_logout_own_results_offer_the_login_and_come_back_after_it(user):
    client = Client()
    client.force_login(user)
    post_photo(client)
    prediction = Prediction.objects.get()
    client.post("/accounts/logout/")
    response = client.get(f"/p/{prediction.id}/")
    assert response.status_code == 404  # not shown to whoever holds the browser now
    assert f"/accounts/login/?next=/p/{prediction.id}/" in response.content.decode()
    response = client.post(
        f"/accounts/login/?next=/p/{prediction.id}/",
        {"username": user.username, "password": "pw-123-not-common", "next": f"/p/{prediction.id}/"},
    )
    assert response["Location"] == f"/p/{prediction.id}/"
    assert client.get(response["Location"]).status_code == 200


def test_another_signed_in_user_gets_a_plain_404_without_a_login_offer(user, other_user):
    owner, stranger = Client(), Client()
    owner.force_login(user)
    post_photo(owner)
    stranger.force_login(other_user)
    response = stranger.get(f"/p/{Prediction.objects.get().id}/")
    assert response.status_code == 404 and "log in to see it" not in response.content.decode()


def test_password_change_needs_the_old_password(user):
    client = Client()
    client.force_login(user)
    assert client.get("/accounts/password/change/").status_code == 200
    response = client.post(
        "/accounts/password/change/",
        {"old_password": "pw-123-not-common", "new_password1": PASSWORD, "new_password2": PASSWORD},
    )
    assert response["Location"] == "/accounts/password/change/done/"
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert Client().get("/accounts/password/change/").status_code == 302  # login required


def test_password_reset_sends_an_email_whose_link_sets_a_new_password(user):
    user.email = "shopper@example.com"
    user.save()
    client = Client()
    response = client.post("/accounts/password/reset/", {"email": "shopper@example.com"})
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["shopper@example.com"]
    assert mail.outbox[0].subject == "Reset your Sneakers password"
    link = re.search(r"http://testserver(/accounts/password/reset/\S+/)", mail.outbox[0].body)[1]
    form_url = client.get(link)["Location"]  # Django swaps the token for a session-held one
    response = client.post(form_url, {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert response["Location"] == "/accounts/password/reset/done/"
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert client.get(link).context["validlink"] is False  # used once


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same():
    response = Client().post("/accounts/password/reset/", {"email": "nobody@example.com"}, follow=True)
    assert "Check your email" in response.content.decode() and mail.outbox == []
