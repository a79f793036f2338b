"""Partners app (being built; see issue 12)."""
