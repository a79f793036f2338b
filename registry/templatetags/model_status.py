"""``{% model_status_banner %}``: the site's "no model yet" banner with the training's live progress.

Rendered by ``templates/base.html`` on every site page; it renders nothing once a model is active (one
small query), so shoppers see it only on a fresh install while the first model trains.
"""

from __future__ import annotations

from typing import Any

from django import template

from registry.selectors import model_status

register = template.Library()


@register.inclusion_tag("registry/_model_status.html")
def model_status_banner() -> dict[str, Any]:
    """Context of ``registry/_model_status.html``: ``{"status": model_status(...)}`` (``status.ready`` hides it)."""
    return {"status": model_status(run_when_ready=False)}


@register.filter
def duration(seconds: Any) -> str:
    """Seconds as people say them: "under a minute", "about 4 minutes", "about 1 h 20 min"; "" when unknown."""
    if seconds is None or seconds == "":
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {minutes // 60} h {minutes % 60:02d} min"
