"""API token authentication that reads the partner's rate limits with the token (one query, not two)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


class PartnerTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication`` (``Authorization: Token <key>``), whose one query also loads the user and
    the user's ``PartnerQuota`` (a LEFT JOIN through ``select_related``).

    Every authenticated API request is counted against the caller's rate limits (``partners.throttling``),
    which need the quota; DRF's own class reads the token and user, and the throttle then read the quota in a
    second query (README "Speed", seventh round). The answers are DRF's: ``401`` with "Invalid token." for an
    unknown key, "User inactive or deleted." for an inactive user.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        """``(user, token)`` for ``key``, the user's quota (or its absence) cached on the user.

        Raises:
            AuthenticationFailed: no such token, or its user is inactive.
        """
        model = self.get_model()
        try:
            token = model.objects.select_related("user", "user__partner_quota").get(key=key)
        except model.DoesNotExist:
            raise AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
