"""Site routes of the partners app: the developers' page."""

from django.urls import path

from partners.views import developers

app_name = "partners"

urlpatterns = [
    path("developers/", developers, name="developers"),
]
