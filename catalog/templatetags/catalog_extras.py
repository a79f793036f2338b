"""Template filters of the catalog: brand display names for brand slugs stored in results."""

from django import template

from catalog.selectors import brand_display_names

register = template.Library()


@register.filter
def brand_name(slug: str) -> str:
    """The brand's display name ("New Balance") for a slug (``new-balance``); title-cased slug when unknown."""
    return brand_display_names().get(slug) or str(slug).replace("-", " ").title()
