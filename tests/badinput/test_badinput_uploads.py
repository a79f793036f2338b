"""The bad-input corpus through the API, the site, the image loader and the worker.

Every case in ``tests.badinput.corpus`` is posted to ``POST /api/v1/predictions/`` (with a partner token)
and to the site's ``POST /``, and must get its documented answer: odd but valid photos are queued
(202 / 302) and stored under a server-chosen name inside MEDIA_ROOT; bad ones are refused before
queueing with a 4xx and a specific code, and kept as ``failed`` predictions with that code; never a
500 (``catalog.images.inspect_image`` decides). Accepted photos are then decoded by the worker's
``worker.ml.images.load_rgb`` (orientation, RGB conversion)
and a subset runs through the worker with a tiny model; bytes that fail only in the worker end
``failed`` with a code, never with an exception out of the task.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from catalog.images import inspect_image
from predictions.models import Prediction
from tests.badinput.corpus import (
    ACCEPTED_WITH_CHECK,
    FILE_CASES,
    REQUEST_CASES,
    Accepted,
    FileCase,
    Refused,
)
from tests.badinput.harness import (
    STORED_NAME,
    files_under,
    send_file_api,
    send_file_site,
    send_request_api,
    send_request_site,
)
from worker.ml.errors import ImageError
from worker.ml.images import load_rgb

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:Corrupt EXIF data")]

ACCEPTED = [name for name, case in FILE_CASES.items() if isinstance(case.expect, Accepted)]
REFUSED = [name for name, case in FILE_CASES.items() if isinstance(case.expect, Refused)]
# Places a traversal through a client-chosen name could have written to; none may exist afterwards.
OUTSIDE_TARGETS = [Path("/etc/passwd.jpg"), Path("/etc/cron.d/evil.jpg"), Path("/windows/win.ini.jpg")]


@pytest.fixture
def jail(settings, tmp_path: Path) -> Path:
    """MEDIA_ROOT three folders deep inside the test's own folder, so any escape lands where we look."""
    media = tmp_path / "jail" / "inner" / "media"
    settings.MEDIA_ROOT = media
    settings.SNEAKERS_API_RATES = {**settings.SNEAKERS_API_RATES, "upload": "100000/min"}
    return media


def assert_contained(tmp_path: Path, media: Path, case: FileCase) -> None:
    """Every file the upload wrote is inside MEDIA_ROOT under a stored-upload name; nothing escaped."""
    media = media.resolve()
    for path in files_under(tmp_path):
        assert path.is_relative_to(media), f"{case.name}: file written outside MEDIA_ROOT: {path}"
        assert STORED_NAME.match(path.relative_to(media).as_posix()), f"{case.name}: unexpected stored file {path}"
    for target in OUTSIDE_TARGETS:
        assert not target.exists(), target


def assert_stored(prediction: Prediction, data: bytes, ext: str, media: Path) -> None:
    """The stored file: ``uploads/YYYY/MM/DD/<id>.<ext>``, inside MEDIA_ROOT, the exact bytes sent."""
    match = STORED_NAME.match(prediction.image.name)
    assert match, prediction.image.name
    assert (match["id"], match["ext"]) == (str(prediction.id), ext)
    path = Path(prediction.image.path).resolve()
    assert path.is_relative_to(media.resolve())
    assert path.read_bytes() == data
    name = prediction.original_filename
    assert len(name) <= 255 and not set(name) & {"/", "\\", "\x00"}, name


def assert_refused_and_kept(prediction_id: str | None, case: FileCase, data: bytes, media: Path) -> Prediction:
    """The refused upload is a ``failed`` prediction with the code; its bytes kept as ``.bin`` unless oversize."""
    assert prediction_id, "the refusal names the failed prediction"
    prediction = Prediction.objects.get(id=prediction_id)
    assert (prediction.status, prediction.error_code) == ("failed", case.expect.code)
    assert prediction.error_message and prediction.finished_at is not None
    if case.expect.code in ("image_too_large", "image_empty"):
        assert not prediction.image
    else:
        assert_stored(prediction, data, "bin", media)
    return prediction


def test_the_corpus_has_at_least_60_cases_of_every_kind():
    names = list(FILE_CASES) + list(REQUEST_CASES)
    assert len(names) == len(set(names)) >= 60
    codes = {case.expect.code for case in FILE_CASES.values() if isinstance(case.expect, Refused)}
    assert codes == {
        "image_empty",
        "image_too_large",
        "image_unreadable",
        "image_format_unsupported",
        "image_too_many_pixels",
        "image_too_small",
    }
    assert len(ACCEPTED) >= 25 and len(ACCEPTED_WITH_CHECK) >= 15


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_api_upload(name, jail, settings, tmp_path, user, token_client):
    case = FILE_CASES[name]
    if case.max_bytes:
        settings.SNEAKERS_UPLOAD_MAX_BYTES = case.max_bytes
    token_client.raise_request_exception = False
    data = case.build()

    response = send_file_api(token_client, case, data)

    assert response.status < 500
    if isinstance(case.expect, Accepted):
        assert response.status == 202, response
        prediction = Prediction.objects.get(id=response.prediction_id)
        assert (prediction.status, prediction.owner, prediction.channel) == ("queued", user, "api")
        assert_stored(prediction, data, case.expect.stored_ext, jail)
    else:
        assert (response.status, response.code) == (case.expect.status, case.expect.code), response
        assert response.message
        prediction = assert_refused_and_kept(response.prediction_id, case, data, jail)
        assert prediction.owner == user
        detail = token_client.get(f"/api/v1/predictions/{prediction.id}/").json()
        assert detail["status"] == "failed" and detail["error"]["code"] == case.expect.code
    assert Prediction.objects.count() == 1
    assert_contained(tmp_path, jail, case)


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_site_upload(name, jail, settings, tmp_path):
    case = FILE_CASES[name]
    if case.max_bytes:
        settings.SNEAKERS_UPLOAD_MAX_BYTES = case.max_bytes
    client = Client(raise_request_exception=False)
    data = case.build()

    response = send_file_site(client, case, data)

    assert response.status < 500
    prediction = Prediction.objects.get()
    assert prediction.channel == "web" and prediction.owner is None
    assert prediction.session_key and prediction.session_key == client.session.session_key
    if isinstance(case.expect, Accepted):
        assert response.status == 302 and response.prediction_id == str(prediction.id)
        assert prediction.status == "queued"
        assert_stored(prediction, data, case.expect.stored_ext, jail)
    else:
        assert response.status == case.expect.status
        assert_refused_and_kept(str(prediction.id), case, data, jail)
        # A readable message on the page: the one stored with the failed prediction.
        assert response.message == html.escape(prediction.error_message) and "Traceback" not in response.message
        status = client.get(f"/p/{prediction.id}/status/").json()
        assert status["status"] == "failed" and status["error"]["code"] == case.expect.code
    assert_contained(tmp_path, jail, case)


@pytest.mark.parametrize("name", list(REQUEST_CASES))
def test_api_malformed_request(name, jail, tmp_path, token_client):
    case = REQUEST_CASES[name]
    token_client.raise_request_exception = False
    response = send_request_api(token_client, case)
    assert (response.status, response.code) == (case.api.status, case.api.code), response
    assert response.message
    assert Prediction.objects.count() == 0
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("name", list(REQUEST_CASES))
def test_site_malformed_request(name, jail, tmp_path):
    case = REQUEST_CASES[name]
    raw = case.send(Client(raise_request_exception=False), "/")
    assert raw.status_code == case.site_status
    assert case.site_message in raw.content.decode("utf-8", "replace")
    assert Prediction.objects.count() == 0
    assert files_under(tmp_path) == []
    answer = send_request_site(Client(raise_request_exception=False), case)
    assert answer.status == case.site_status


def test_refusals_need_no_credentials_to_stay_private(jail):
    """Without a token the API refuses before reading the file: 401, nothing stored."""
    case = FILE_CASES["jpeg_baseline"]
    response = send_file_api(APIClient(), case)
    assert (response.status, response.code) == (401, "not_authenticated")
    assert Prediction.objects.count() == 0


# --- the worker's loader on accepted files -------------------------------------------------------


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_files_load_as_upright_rgb(name):
    case = FILE_CASES[name]
    data = case.build()
    info = inspect_image(data)
    assert {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[info.format] == case.expect.stored_ext
    rgb = load_rgb(data)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
    assert max(rgb.shape[:2]) <= 1024
    if case.check is not None:
        case.check(rgb)


# The worker's loader does not repeat the upload checks (catalog.images explains why): it only bounds
# bytes and pixels and maps Pillow's errors. So on a refused file it may decode something (a PNG whose
# pixel data stops early, with its missing rows black; a GIF), but it never raises anything but
# ``ImageError``, and the files its own bounds catch get the same code as at the upload.
LOADER_BOUNDS = {"image_too_large", "image_too_many_pixels"}


@pytest.mark.parametrize("name", REFUSED)
def test_the_worker_loader_fails_only_with_image_error_on_what_the_web_refuses(name):
    case = FILE_CASES[name]
    data = case.build()
    max_bytes = case.max_bytes or len(data) + 1
    try:
        rgb = load_rgb(data, max_bytes=max_bytes)
    except ImageError as exc:
        if case.expect.code in LOADER_BOUNDS:
            assert exc.code == case.expect.code
        return
    assert case.expect.code not in LOADER_BOUNDS, "the loader's own bounds let the file through"
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


@pytest.mark.parametrize("name", ["png_missing_iend", "png_bad_crc"])
def test_the_worker_loader_decodes_a_png_with_intact_pixels_but_a_broken_frame(name):
    rgb = load_rgb(FILE_CASES[name].build())
    assert rgb.shape == (48, 64, 3) and tuple(rgb[0, 0]) == (200, 30, 30)


# --- the worker pipeline with a tiny model --------------------------------------------------------

WORKER_SUCCESS = [
    "jpeg_mpo_gain_map",
    "exif_orientation_6",
    "exif_malformed",
    "jpeg_cmyk",
    "png_16bit_gray",
    "png_48bit_rgb",
    "png_la_half",
    "png_palette_trns",
    "png_rgba_transparent",
    "webp_animated",
    "png_animated_apng",
    "wide_20000x20",
    "tall_20x20000_jpeg",
    "side_16_px",
    "png_text_chunk_5mb",
    "jpeg_plus_zip",
]
# Bytes the web refuses, written over an accepted upload's stored file: what a worker sees if storage is
# corrupted or the file was accepted by an older validator. Each must end ``failed`` with the same code.
# Stored bytes the worker's decoder cannot use, and its code. Only what decoding meets: the upload-policy
# refusals (GIF, a 1-pixel image) are not the loader's business (see catalog.images), and an empty file is
# simply unreadable to it.
WORKER_FAILURES = {
    "png_idat_not_deflate": "image_unreadable",
    "png_bad_filter_bytes": "image_unreadable",
    "jpeg_truncated_2_3": "image_unreadable",
    "webp_truncated_2_3": "image_unreadable",
    "png_bomb_72mp": "image_too_many_pixels",
    "html_as_jpg": "image_unreadable",
    "empty_file": "image_unreadable",
}


@pytest.fixture
def tiny_model(settings, tiny_backbone_path, jail):
    """The tiny made catalog and a model version trained on it (see tests/services/test_worker_pipeline.py)."""
    from registry import runtime
    from registry.training import model_version_train
    from tests.tiny_catalog import build_tiny_catalog

    settings.SNEAKERS_BACKBONE_PATH = tiny_backbone_path
    settings.SNEAKERS_BACKGROUND_METHOD = "none"
    runtime.clear()
    build_tiny_catalog()
    yield model_version_train(seed=0)
    runtime.clear()


def _queued(case: FileCase, data: bytes | None = None) -> Prediction:
    from predictions.services import prediction_create

    upload = SimpleUploadedFile(case.filename, case.build() if data is None else data)
    return prediction_create(upload=upload, channel="web", session_key="worker-test")


def test_odd_but_valid_photos_succeed_in_the_worker(tiny_model):
    from predictions.services import prediction_run

    problems = []
    for name in WORKER_SUCCESS:
        prediction = _queued(FILE_CASES[name])
        prediction_run(prediction_id=str(prediction.id))
        prediction.refresh_from_db()
        if prediction.status != "succeeded" or not prediction.brands or not prediction.cutout:
            problems.append((name, prediction.status, prediction.error_code, prediction.error_message))
            continue
        assert default_storage.open(prediction.cutout.name).read(3) == b"\xff\xd8\xff"
    assert problems == []


def test_bytes_that_fail_only_in_the_worker_end_failed_with_a_code(tiny_model):
    from predictions.tasks import predict

    good = FILE_CASES["jpeg_baseline"]
    for name, code in WORKER_FAILURES.items():
        case = FILE_CASES[name]
        prediction = _queued(good)
        Path(prediction.image.path).write_bytes(case.build())  # what the worker will read

        result = predict.apply(args=[str(prediction.id)])  # the Celery task, run in this process

        assert result.successful(), (name, result.traceback)
        prediction.refresh_from_db()
        assert (prediction.status, prediction.error_code) == ("failed", code), name
        assert prediction.error_message and prediction.finished_at is not None


def test_an_upload_whose_file_vanished_fails_with_upload_missing(tiny_model):
    from predictions.tasks import predict

    prediction = _queued(FILE_CASES["jpeg_baseline"])
    Path(prediction.image.path).unlink()
    assert predict.apply(args=[str(prediction.id)]).successful()
    prediction.refresh_from_db()
    assert (prediction.status, prediction.error_code) == ("failed", "upload_missing")
