"""Template tags of the catalog: brand display names for brand slugs stored in results."""

from django import template

from catalog.selectors import brand_display_names

register = template.Library()


@register.simple_tag(takes_context=True)
def brand_name(context: template.Context, slug: str) -> str:
    """The brand's display name ("New Balance") for a slug (``new-balance``); title-cased slug when unknown.

    The names are read once per template render (kept in ``context.render_context``), not once per use:
    a result page names up to twenty brands.
    """
    names = context.render_context.get("brand_display_names")
    if names is None:
        names = context.render_context["brand_display_names"] = brand_display_names()
    return names.get(slug) or str(slug).replace("-", " ").title()
