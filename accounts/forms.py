"""Forms of the accounts app: sign-up with an email address (used for password reset)."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    """Django's ``UserCreationForm`` plus a required email address, unique regardless of case."""

    email = forms.EmailField(
        required=True, help_text="For password reset emails. We send nothing else.", max_length=254
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self) -> str:
        """The address, lower-cased domain (``BaseUserManager.normalize_email``); refused when already used."""
        email = get_user_model().objects.normalize_email(self.cleaned_data["email"])
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(
                "An account with this email address already exists. Log in or reset the password."
            )
        return email
