"""Glue between Django rows and ``worker.ml`` (``worker.inference``) and the Django-free ML package (``worker.ml``)."""
