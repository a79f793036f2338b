"""Shopper sign-up (login and logout are Django's own views)."""

from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods


@require_http_methods(["GET", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    """Create an account with Django's ``UserCreationForm`` and sign the new user in."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("predictions:upload")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)
