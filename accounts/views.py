"""Shopper sign-up; login, logout, password change and reset are Django's own views (``accounts/urls.py``).

Uploads made in the same browser before sign-up or login move to the account: the predictions app
listens to Django's ``user_logged_in`` signal, which ``login`` below sends like every other login.
"""

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from accounts.forms import SignupForm


@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    """Create an account (username, email, password twice) and sign the new user in; then go to ``next``
    (a same-site URL) or the upload page."""
    form = SignupForm(request.POST or None)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if next_url and url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return redirect(next_url)
        return redirect("predictions:upload")
    return render(
        request, "registration/signup.html", {"form": form, "next": next_url}, status=400 if form.errors else 200
    )
