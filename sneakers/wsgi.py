"""WSGI entry point of the web process (gunicorn ``sneakers.wsgi:application``).

The web process never imports TensorFlow, onnxruntime or OpenCV; ``tests/unit/test_web_imports.py``
proves it.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")

application = get_wsgi_application()
