"""Writes of the accounts app."""

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authtoken.models import Token


def partner_token_get_or_create(*, user: AbstractBaseUser) -> Token:
    """The API token of a partner account (created on first use).

    Send it as ``Authorization: Token <key>``. Staff can also create, view and revoke tokens in admin
    (Auth Token > Tokens).
    """
    token, _ = Token.objects.get_or_create(user=user)
    return token
