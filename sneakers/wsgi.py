"""WSGI entry point of the web process (gunicorn ``sneakers.wsgi:application``).

The web process never imports TensorFlow, onnxruntime or OpenCV; ``tests/unit/test_web_imports.py``
proves it.

Once the application is loaded, the objects made so far (modules, classes, Django's app registry and URL
patterns: about 100,000 objects the garbage collector tracks) are moved to the collector's permanent generation
(``gc.freeze``, Python's ``gc`` documentation), where its full collections no longer walk them: they live as long
as the process anyway. Measured with ``valgrind --tool=callgrind`` on in-process API uploads, 1.8 % fewer
instructions per upload, and a full collection no longer stops every thread of the process for tens of
milliseconds (README "Speed", seventh round).
"""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sneakers.settings")

application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - import every view now, before the freeze, not at the first request
gc.collect()
gc.freeze()
