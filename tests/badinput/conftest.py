"""Fixtures of the bad-input tests: a fast password hasher (hundreds of tests create a user each)."""

import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings) -> None:
    """MD5 instead of PBKDF2 for the fixture users: their passwords are not what these tests are about."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
