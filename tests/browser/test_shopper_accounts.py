"""Accounts in a real browser: an upload made before sign-up moves to the new account, a result waiting for a
worker says it takes longer than usual, after logout the result offers the login and comes back after it,
password change, and password reset through the email Django sends.

No worker runs here (nothing needs a result), so uploads stay queued. Needs Chromium (and the test database);
skips with the reason without it.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail

from predictions.models import Prediction
from tests.browser.conftest import DESKTOP, PHONE
from tests.tiny_catalog import BRAND_COLOURS, shoe_photo

expect = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package").expect
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-pass-phrase-9"
NEW_PASSWORD = "another-long-phrase-7"


def _upload(page) -> str:
    """Upload a drawn shoe from the upload page; return the result URL's path."""
    page.goto("/")
    photo = shoe_photo(BRAND_COLOURS["redshoe"], 901, size=(320, 240), fmt="JPEG")
    page.locator("#image").set_input_files(files=[{"name": "red.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.get_by_role("button", name="Identify").click()
    expect(page).to_have_url(re.compile(r"/p/[0-9a-f-]{36}/$"))
    return re.search(r"/p/[0-9a-f-]{36}/$", page.url)[0]


def _log_in(page, username: str, password: str) -> None:
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_an_upload_before_signup_moves_to_the_account_and_survives_logout(open_page, screenshot):
    page = open_page(PHONE)
    result = _upload(page)
    expect(page.get_by_role("heading", name="Looking at your photo…")).to_be_visible()
    slow = page.get_by_text("This is taking longer than usual.")
    expect(slow).to_be_visible()  # no worker runs: after 8 s the page says so, and what to do
    expect(page.get_by_role("link", name="your history")).to_be_visible()
    screenshot(page, "phone-slow")

    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Username").fill("newbie")
    page.get_by_label("Email").fill("newbie@example.com")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    screenshot(page, "phone-signup")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert Prediction.objects.get().owner.username == "newbie"

    page.get_by_role("link", name="History").click()
    expect(page.locator(f'a[href="{result}"]')).to_be_visible()  # the earlier upload is in the account
    expect(page.locator(f'a[href="{result}"]')).to_contain_text("Still working")

    page.get_by_role("button", name="Log out").click()
    page.goto(result)
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.get_by_role("link", name="log in to see it").click()
    _log_in(page, "newbie", PASSWORD)
    expect(page).to_have_url(re.compile(re.escape(result) + "$"))
    expect(page.get_by_role("heading", name="Looking at your photo…")).to_be_visible()
    assert page.problems == []


def test_password_change_and_reset_by_email(open_page, screenshot, django_user_model):
    django_user_model.objects.create_user(username="shopper", email="shopper@example.com", password=PASSWORD)
    page = open_page(DESKTOP)
    page.goto("/accounts/login/")
    _log_in(page, "shopper", PASSWORD)
    page.get_by_role("link", name="shopper").click()
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
    page.locator("#id_old_password").fill(PASSWORD)
    page.locator("#id_new_password1").fill(NEW_PASSWORD)
    page.locator("#id_new_password2").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("shopper@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["shopper@example.com"]
    link = re.search(r"https?://\S+/accounts/password/reset/\S+/", mail.outbox[0].body)[0]
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.locator("#id_new_password1").fill(PASSWORD)
    page.locator("#id_new_password2").fill(PASSWORD)
    screenshot(page, "reset-confirm")
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Your password is set")).to_be_visible()
    page.get_by_role("link", name="Log in").last.click()
    _log_in(page, "shopper", PASSWORD)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    assert page.problems == []
