"""A seed-style synchronous sneaker app, the baseline of ``benchmarks/bench_speed.py``: a Flask app that does
all the work inside the request, the way the projects this one replaces did (a photo in, GrabCut to cut the
shoe out, a VGG16 classifier, the answer in the same response).

Run (the bench starts it itself)::

    .venv/bin/gunicorn --chdir benchmarks/seed_app --workers 2 --bind 127.0.0.1:8140 app:app

``POST /predict`` with a multipart ``image`` answers ``{"brand", "probability", "timings_ms"}``.

What it does per request, and why it costs what the seed apps cost:

- Pillow decode (EXIF orientation applied), RGB;
- OpenCV GrabCut (``cv2.grabCut``, 5 iterations from a rectangle inset 3 % per side; Rother et al. 2004) on a
  copy whose longest side is 320 px (as this project's own GrabCut fallback, ``worker.ml.background``), the
  photo composited onto white through the mask;
- ``keras.applications.VGG16`` (Simonyan & Zisserman 2015) at 224 x 224 with ``weights=None``: no ImageNet
  weights are stored here and none can be downloaded, and random weights cost the same FLOPs (about 15.5
  GMACs per photo) as trained ones. Its answer is therefore meaningless; only its time counts. The 1,000
  ImageNet outputs stand in for the brand head (mapped onto the brand names, to have an answer to print).

One model per gunicorn process, loaded at import (``--preload`` is not used, as a seed app would not).
"""

from __future__ import annotations

import io
import os
import time

import numpy as np
from flask import Flask, jsonify, request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

BRANDS = ("adidas", "asics", "converse", "new-balance", "nike", "puma", "reebok", "salomon", "vans")
GRABCUT_SIDE = 320
VGG_SIZE = 224

app = Flask(__name__)
model = keras.applications.VGG16(weights=None)


def grabcut_on_white(rgb: np.ndarray) -> np.ndarray:
    """``(h, w, 3) uint8``: the photo scaled to ``GRABCUT_SIDE`` px (longest side), GrabCut foreground on white."""
    scale = min(1.0, GRABCUT_SIDE / max(rgb.shape[:2]))
    small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))))
    height, width = small.shape[:2]
    mx, my = max(1, round(width * 0.03)), max(1, round(height * 0.03))
    labels = np.zeros((height, width), np.uint8)
    try:
        cv2.grabCut(
            np.ascontiguousarray(small[:, :, ::-1]),
            labels,
            (mx, my, max(1, width - 2 * mx), max(1, height - 2 * my)),
            np.zeros((1, 65), np.float64),
            np.zeros((1, 65), np.float64),
            5,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return small
    foreground = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD))[..., None]
    return np.where(foreground, small, 255).astype(np.uint8)


@app.post("/predict")
def predict():
    """Decode, GrabCut, VGG16; ``{"brand", "probability", "timings_ms"}`` or 400 for an unreadable file."""
    started = time.perf_counter()
    upload = request.files.get("image")
    if upload is None:
        return jsonify({"error": "send the photo as the multipart field 'image'"}), 400
    try:
        rgb = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(upload.read()))).convert("RGB"))
    except Exception as exc:  # Pillow raises several types for bad files
        return jsonify({"error": f"not an image: {exc}"}), 400
    decoded = time.perf_counter()
    cut = grabcut_on_white(rgb)
    cut_done = time.perf_counter()
    x = cv2.resize(cut, (VGG_SIZE, VGG_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    probabilities = model.predict(keras.applications.vgg16.preprocess_input(x[None]), verbose=0)[0]
    done = time.perf_counter()
    best = int(np.argmax(probabilities))
    return jsonify(
        {
            "brand": BRANDS[best % len(BRANDS)],
            "probability": float(probabilities[best]),
            "timings_ms": {
                "decode": round((decoded - started) * 1000, 1),
                "grabcut": round((cut_done - decoded) * 1000, 1),
                "vgg16": round((done - cut_done) * 1000, 1),
                "total": round((done - started) * 1000, 1),
            },
        }
    )


@app.get("/healthz")
def healthz():
    """``{"status": "ok"}``."""
    return jsonify({"status": "ok"})
