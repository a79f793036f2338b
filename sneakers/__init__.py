"""The Sneakers Django project: settings, root URLs, the Celery app, WSGI/ASGI."""

from sneakers.celery import app as celery_app

__all__ = ("celery_app",)
