"""Catalog: brands, products, product images, catalog import and the read API."""
