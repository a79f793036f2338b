"""The web process never loads TensorFlow, Keras, onnxruntime, OpenVINO or OpenCV.

Checked in a fresh interpreter: import the WSGI entry point and every view/API module, resolve all
URLs and render the upload page, then look at ``sys.modules``. The same probe checks that the entry point froze
what it loaded (``gc.freeze``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, sys
import sneakers.wsgi
print("FROZEN:%d" % gc.get_freeze_count())
import sneakers.urls, predictions.views, predictions.apis, catalog.apis, accounts.views
import predictions.services, predictions.tasks, registry.tasks, registry.admin, worker.inference
from django.test import Client
from django.conf import settings
settings.ALLOWED_HOSTS = ["testserver"]
Client().get("/api/schema/")
ml = {"tensorflow", "keras", "onnxruntime", "openvino", "cv2"}
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ml)
print("HEAVY:" + ",".join(heavy))
"""


def test_web_entry_point_and_views_do_not_import_ml_libraries(tmp_path):
    env = {"DJANGO_SETTINGS_MODULE": "sneakers.settings", "SNEAKERS_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    heavy_line = [line for line in result.stdout.splitlines() if line.startswith("HEAVY:")][0]
    assert heavy_line == "HEAVY:", f"web process imported: {heavy_line[6:]}"
    frozen = [line for line in result.stdout.splitlines() if line.startswith("FROZEN:")][0]
    assert int(frozen[7:]) > 50_000  # the loaded application is out of the collector's way (sneakers/wsgi.py)
