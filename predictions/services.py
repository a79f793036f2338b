"""Writes of the predictions app: create an upload, enqueue it, run it, move a job through its states.

Runs in the web process (upload) and in workers (``prediction_run``, state changes). Imports no ML
library at module level: ``worker.inference`` loads TensorFlow only when a worker builds a pipeline.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from catalog.downloads import DownloadError, fetch_url
from catalog.images import ImageRejected, inspect_image
from catalog.models import Brand, Product, ProductImage
from predictions.models import Feedback, Prediction
from predictions.signals import prediction_finished
from registry.models import ModelVersion
from registry.selectors import model_version_get_active
from sneakers.exceptions import ApplicationError
from worker import inference
from worker.ml.errors import ImageError, ModelError

logger = logging.getLogger(__name__)

FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# HTTP status per refusal code; everything else about a bad image is a plain 400.
REFUSAL_STATUS = {"image_too_large": 413, "image_format_unsupported": 415}


def prediction_finished_send(
    *, prediction: Prediction, embedding: Any = None, nearest_similarity: float | None = None
) -> None:
    """Send ``predictions.signals.prediction_finished`` once the current transaction commits (at once outside one).

    ``embedding`` is the photo's ``(D,) float32`` backbone embedding, or None; ``nearest_similarity`` its largest
    cosine similarity to a catalog image of the model's index, or None. Receivers that raise are logged
    (``send_robust``); the terminal status is already stored.
    """

    def send() -> None:
        for receiver, result in prediction_finished.send_robust(
            sender=Prediction, prediction=prediction, embedding=embedding, nearest_similarity=nearest_similarity
        ):
            if isinstance(result, Exception):
                logger.error("prediction_finished receiver %r failed for %s", receiver, prediction.id, exc_info=result)

    transaction.on_commit(send)


def _money(value: float | None) -> Decimal | None:
    """A USD amount rounded to cents, or ``None``."""
    return None if value is None else Decimal(str(round(float(value), 2)))


def prediction_create(
    *,
    upload: UploadedFile,
    channel: str,
    owner: AbstractBaseUser | None = None,
    session_key: str = "",
    title: str = "",
    description: str = "",
) -> Prediction:
    """Validate an uploaded photo, store it, create a ``queued`` prediction and enqueue it after commit.

    Validation trusts nothing the client says: byte size against ``SNEAKERS_UPLOAD_MAX_BYTES``, the
    header decoded by Pillow, the format among JPEG/PNG/WebP, the pixel count against
    ``SNEAKERS_UPLOAD_MAX_PIXELS`` (decompression bombs), a full decode for truncated files. The
    stored file is named after the prediction's UUID and the detected format, never the client's name.
    ``title`` (cut to 300 characters) and ``description`` are the optional listing text sent with it.

    A refused upload is not lost: it is kept (bytes too, unless over the size limit) as a ``failed``
    prediction with the error code, then ``ApplicationError`` is raised with that prediction's id in
    ``extra["prediction_id"]``.

    Raises:
        ApplicationError: ``image_too_large`` (413), ``image_format_unsupported`` (415) or another
            ``image_*`` code (400) from ``catalog.images.inspect_image``.
    """
    if owner is None and not session_key:
        raise ValueError("a prediction needs an owner or a session key")
    prediction = Prediction(
        owner=owner if owner is not None and owner.is_authenticated else None,
        session_key="" if owner is not None and owner.is_authenticated else session_key,
        channel=channel,
        original_filename=(upload.name or "")[-255:],
        size_bytes=upload.size or 0,
        title=(title or "").strip()[:300],
        description=(description or "").strip(),
    )
    max_bytes = settings.SNEAKERS_UPLOAD_MAX_BYTES
    data = b""
    try:
        if (upload.size or 0) > max_bytes:
            raise ImageRejected("image_too_large", f"The file is {upload.size} bytes; the limit is {max_bytes} bytes.")
        upload.seek(0)
        data = upload.read(max_bytes + 1)
        info = inspect_image(data, max_bytes=max_bytes, max_pixels=settings.SNEAKERS_UPLOAD_MAX_PIXELS)
    except ImageRejected as exc:
        _prediction_save_refused(prediction=prediction, data=data if len(data) <= max_bytes else b"", error=exc)
        raise ApplicationError(
            exc.message,
            code=exc.code,
            extra={"prediction_id": str(prediction.id)},
            status_code=REFUSAL_STATUS.get(exc.code, 400),
        ) from exc

    prediction.sha256 = hashlib.sha256(data).hexdigest()
    prediction.size_bytes = len(data)
    # The file first and the row by itself (one INSERT), so no database write lock is held while the photo is
    # written: on the embedded SQLite database, uploads queue for that lock (README "Speed", sixth round).
    prediction.image.save(f"upload.{FORMAT_EXTENSIONS[info.format]}", ContentFile(data), save=False)
    try:
        prediction.save(force_insert=True)
    except BaseException:
        prediction.image.delete(save=False)
        raise
    transaction.on_commit(lambda: prediction_enqueue(prediction_id=prediction.id))
    return prediction


def prediction_create_from_url(
    *,
    url: str,
    channel: str,
    owner: AbstractBaseUser,
    title: str = "",
    description: str = "",
) -> Prediction:
    """Create a ``queued`` prediction for an image URL (a batch item) and enqueue it after commit.

    Nothing is downloaded here: the worker fetches the URL (``catalog.downloads.fetch_url``, public addresses
    only, size and time limits) and checks the bytes like an upload before running the model
    (``prediction_run``). ``url`` is kept in ``source_url`` whatever happens.
    """
    prediction = Prediction.objects.create(
        owner=owner,
        channel=channel,
        source_url=url[:2000],
        original_filename=url.rsplit("/", 1)[-1].split("?", 1)[0][-255:],
        title=(title or "").strip()[:300],
        description=(description or "").strip(),
    )
    transaction.on_commit(lambda: prediction_enqueue(prediction_id=prediction.id))
    return prediction


def _prediction_fetch_source(*, prediction: Prediction) -> bytes | None:
    """Download a URL item's image, check it like an upload and store it on the (running) prediction.

    Returns the bytes, or None after failing the prediction: with the ``DownloadError`` code (``url_*``)
    when the download fails, or with the ``image_*`` code when the bytes are refused (kept as ``upload.bin``).
    """
    try:
        data = fetch_url(prediction.source_url).content
    except DownloadError as exc:
        prediction_mark_failed(prediction_id=prediction.id, code=exc.code, message=exc.message)
        return None
    prediction.sha256 = hashlib.sha256(data).hexdigest()
    prediction.size_bytes = len(data)
    try:
        info = inspect_image(
            data, max_bytes=settings.SNEAKERS_UPLOAD_MAX_BYTES, max_pixels=settings.SNEAKERS_UPLOAD_MAX_PIXELS
        )
    except ImageRejected as exc:
        prediction.image.save("upload.bin", ContentFile(data), save=False)
        Prediction.objects.filter(id=prediction.id).update(
            image=prediction.image.name, sha256=prediction.sha256, size_bytes=prediction.size_bytes
        )
        prediction_mark_failed(prediction_id=prediction.id, code=exc.code, message=exc.message)
        return None
    prediction.image.save(f"upload.{FORMAT_EXTENSIONS[info.format]}", ContentFile(data), save=False)
    Prediction.objects.filter(id=prediction.id).update(
        image=prediction.image.name, sha256=prediction.sha256, size_bytes=prediction.size_bytes
    )
    return data


def _prediction_save_refused(*, prediction: Prediction, data: bytes, error: ImageRejected) -> None:
    """Keep a refused upload as a ``failed`` prediction (with its bytes when there are some).

    ``finished_at`` equals ``created_at`` (refused on arrival), never an instant before it.
    """
    prediction.status = Prediction.Status.FAILED
    prediction.error_code = error.code
    prediction.error_message = error.message
    if data:
        prediction.sha256 = hashlib.sha256(data).hexdigest()
        prediction.image.save("upload.bin", ContentFile(data), save=False)
    with transaction.atomic():
        prediction.save()  # sets created_at (auto_now_add)
        prediction.finished_at = prediction.created_at
        prediction.save(update_fields=["finished_at"])
        prediction_finished_send(prediction=prediction)


def prediction_enqueue(*, prediction_id: Any) -> bool:
    """Send the ``predict`` task for a prediction to the ``inference`` queue.

    A broker outage does not lose the upload: the row stays ``queued`` and the error is logged.
    Returns True when the broker accepted the message.
    """
    try:
        current_app.send_task("predictions.tasks.predict", args=[str(prediction_id)])
    except Exception:  # kombu raises transport-specific errors; any of them means "not sent"
        logger.exception("could not enqueue prediction %s; it stays queued for the sweeper", prediction_id)
        return False
    Prediction.objects.filter(id=prediction_id).update(enqueued_at=timezone.now())
    return True


def prediction_enqueue_waiting() -> int:
    """Enqueue every ``queued`` prediction again: the ones that waited while no model was active.

    Called when the first model version becomes active (``predictions.receivers``). A prediction whose
    message is still in the queue gets a second one, which does nothing (``prediction_claim``).
    Returns how many the broker accepted.
    """
    waiting = Prediction.objects.filter(status=Prediction.Status.QUEUED).order_by("created_at")
    sent = sum(prediction_enqueue(prediction_id=pk) for pk in waiting.values_list("id", flat=True).iterator())
    if sent:
        logger.info("a model is active: %d waiting prediction(s) enqueued", sent)
    return sent


@dataclass(frozen=True)
class SweepReport:
    """What one ``prediction_sweep`` did (counts of predictions)."""

    requeued: int
    retried: int
    failed: int


def inference_queue_length() -> int | None:
    """Messages waiting in the broker's ``inference`` queue, or None when the broker cannot say."""
    try:
        with current_app.connection_for_read() as connection:
            # Declaring is idempotent and answers the size; a passive declare fails on a queue no
            # worker has declared yet (kombu's Redis transport), which simply holds nothing.
            channel = connection.default_channel
            return channel.queue_declare(queue="inference", durable=True, auto_delete=False).message_count
    except Exception:  # broker down, or a transport that cannot count: assume jobs may be waiting
        logger.warning("could not read the inference queue length", exc_info=True)
        return None


def prediction_sweep(*, now: datetime | None = None) -> SweepReport:
    """Recover jobs that a broker outage or a dead worker left behind; run periodically (Celery beat).

    - ``queued`` predictions whose task the broker never accepted (broker down at upload), older
      than ``SNEAKERS_REQUEUE_AFTER_SECONDS``, are enqueued again.
    - ``queued`` predictions the broker accepted are enqueued again when their message cannot be
      waiting in line any more: after ``SNEAKERS_REQUEUE_AFTER_SECONDS`` when the ``inference``
      queue is empty (the message was reserved by a worker that died before starting it — Redis
      would only redeliver it after its visibility timeout — or lost by a broker restart), otherwise
      after ``SNEAKERS_REQUEUE_LOST_AFTER_SECONDS`` (above the longest expected queue wait). A
      duplicate is harmless (a task claims its row with a conditional update).
    - ``running`` predictions started more than ``SNEAKERS_STUCK_AFTER_SECONDS`` ago (longer than the
      task's hard time limit, so their worker is gone: killed, out of memory, host lost) go back to
      ``queued`` and are enqueued, until ``SNEAKERS_MAX_ATTEMPTS`` attempts; then they fail with
      ``worker_lost``.
    """
    now = now or timezone.now()
    requeue_before = now - timedelta(seconds=settings.SNEAKERS_REQUEUE_AFTER_SECONDS)
    lost_before = now - timedelta(seconds=settings.SNEAKERS_REQUEUE_LOST_AFTER_SECONDS)
    if inference_queue_length() == 0:
        lost_before = requeue_before  # nothing waits in line: a queued job's message is gone
    stuck_before = now - timedelta(seconds=settings.SNEAKERS_STUCK_AFTER_SECONDS)
    batch = settings.SNEAKERS_SWEEP_BATCH

    stale = Prediction.objects.filter(status=Prediction.Status.QUEUED).filter(
        Q(enqueued_at__isnull=True, created_at__lt=requeue_before) | Q(enqueued_at__lt=lost_before)
    )
    requeued = sum(prediction_enqueue(prediction_id=pk) for pk in stale.values_list("id", flat=True)[:batch])

    retried = failed = 0
    stuck = Prediction.objects.filter(status=Prediction.Status.RUNNING, started_at__lt=stuck_before)
    for pk, attempts, started_at in stuck.values_list("id", "attempts", "started_at")[:batch]:
        if attempts >= settings.SNEAKERS_MAX_ATTEMPTS:
            prediction_mark_failed(
                prediction_id=pk,
                code="worker_lost",
                message=f"The job was interrupted {attempts} times (worker killed or lost) and was given up.",
            )
            failed += 1
            continue
        # Conditional on started_at: a worker that claimed it again in the meantime keeps it.
        changed = Prediction.objects.filter(id=pk, status=Prediction.Status.RUNNING, started_at=started_at).update(
            status=Prediction.Status.QUEUED
        )
        if changed:
            retried += 1
            prediction_enqueue(prediction_id=pk)
    if requeued or retried or failed:
        logger.warning("sweep: %d requeued, %d retried, %d failed", requeued, retried, failed)
    return SweepReport(requeued=requeued, retried=retried, failed=failed)


def prediction_claim(*, prediction_id: Any) -> Prediction | None:
    """Move a prediction ``queued -> running`` with a conditional update; None if another worker has it.

    Safe to call twice: only the first caller gets the row.
    """
    # One UPDATE, so a worker killed right after claiming still leaves its attempt counted.
    changed = Prediction.objects.filter(id=prediction_id, status=Prediction.Status.QUEUED).update(
        status=Prediction.Status.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    if not changed:
        return None
    return Prediction.objects.get(id=prediction_id)


def prediction_release(*, prediction_id: Any) -> None:
    """Put a ``running`` prediction back to ``queued`` (before a retry after a transient error)."""
    Prediction.objects.filter(id=prediction_id, status=Prediction.Status.RUNNING).update(
        status=Prediction.Status.QUEUED
    )


def prediction_mark_succeeded(
    *,
    prediction: Prediction,
    model_version: ModelVersion,
    brands: Sequence[dict[str, Any]],
    price: dict[str, float] | None,
    similar: Sequence[dict[str, Any]],
    cutout_jpeg: bytes,
    background_method: str,
    timings_ms: dict[str, float],
    abstain: dict[str, Any] | None = None,
    shoe_model: str | None = None,
    shoe_models: Sequence[dict[str, Any]] = (),
    embedding: Any = None,
    inputs: Sequence[str] = ("image",),
    nearest_similarity: float | None = None,
) -> Prediction:
    """Store a finished result on a ``running`` prediction and mark it ``succeeded``.

    Args:
        brands: top-k as ``[{"name": slug, "probability": float}]``, best first.
        price: ``{"estimate", "low", "high"}`` in USD, or None when the model has no price head.
        similar: ``[{"product_id", "name", "brand", "price_usd", "score"}]``, best first.
        cutout_jpeg: the background-removed image the model looked at, JPEG bytes.
        timings_ms: milliseconds per pipeline stage.
        abstain: ``{"reason": "not_footwear" | "unknown_brand" | "low_confidence", "score": float}`` when
            the model declines to name a brand (``brand`` stays empty, ``brands`` keeps the guesses), else None.
        shoe_model: the named shoe model when the model head is sure, else None.
        shoe_models: top-k named models as ``[{"name", "brand", "probability"}]``, best first.
        inputs: what the answer was made from (``InferenceOutcome.inputs``: ``("image",)``, or with ``"title"`` /
            ``"description"`` when listing text was fused).
        embedding: the photo's backbone embedding, ``(D,) float32``, or None; passed on to the receivers of
            ``prediction_finished`` (monitoring's drift), not stored.
        nearest_similarity: the embedding's largest cosine similarity to a catalog image of the version's index
            (``InferenceOutcome.nearest_similarity``), or None; passed on with the embedding, not stored.
    """
    prediction.status = Prediction.Status.SUCCEEDED
    prediction.model_version = model_version
    prediction.brands = list(brands)
    prediction.abstain = abstain
    prediction.brand = brands[0]["name"] if brands and abstain is None else ""
    prediction.shoe_model = (shoe_model or "")[:255]
    prediction.shoe_models = list(shoe_models)
    prediction.inputs = list(inputs)
    prediction.price_estimate_usd = _money(price["estimate"]) if price else None
    prediction.price_low_usd = _money(price["low"]) if price else None
    prediction.price_high_usd = _money(price["high"]) if price else None
    prediction.similar = list(similar)
    prediction.background_method = background_method
    prediction.timings_ms = {key: round(float(value), 1) for key, value in timings_ms.items()}
    prediction.error_code = ""
    prediction.error_message = ""
    prediction.finished_at = timezone.now()
    with transaction.atomic():
        prediction.cutout.save("cutout.jpg", ContentFile(cutout_jpeg), save=False)
        prediction.save()
        prediction_finished_send(prediction=prediction, embedding=embedding, nearest_similarity=nearest_similarity)
    return prediction


def prediction_mark_failed(*, prediction_id: Any, code: str, message: str) -> None:
    """Mark a non-terminal prediction ``failed`` with an error code and a readable message.

    Sends ``prediction_finished`` (after commit) when this call is the one that ended it.
    """
    with transaction.atomic():
        changed = (
            Prediction.objects.filter(id=prediction_id)
            .exclude(status__in=Prediction.TERMINAL)
            .update(
                status=Prediction.Status.FAILED,
                error_code=code,
                error_message=message[:2000],
                finished_at=timezone.now(),
            )
        )
        if changed:
            prediction_finished_send(prediction=Prediction.objects.get(id=prediction_id))


def prediction_run(*, prediction_id: str) -> None:
    """Claim a queued prediction, run the active model's pipeline on its photo, store the outcome.

    With no active version yet (a fresh install while the first model trains) the prediction is left
    ``queued``, unclaimed: it waits, and ``prediction_enqueue_waiting`` sends it again once a version is
    activated (``registry.signals.model_activated``, ``predictions.receivers``).

    Permanent problems end the job ``failed`` with a code, once: ``image_*`` (bad photo),
    ``model_unavailable`` (the active version's weights/artifact missing or corrupt),
    ``upload_missing`` (the stored file is gone), ``url_*`` (a URL item's download failed; see
    ``catalog.downloads.DOWNLOAD_ERROR_CODES``). Transient errors (database, storage I/O) propagate
    so the Celery task retries; the caller puts the row back to ``queued`` first.
    """
    model_version = model_version_get_active()
    if model_version is None:
        logger.info("prediction %s stays queued: no model is active yet", prediction_id)
        return
    prediction = prediction_claim(prediction_id=prediction_id)
    if prediction is None:
        logger.info("prediction %s is not queued (done, or another worker has it)", prediction_id)
        return
    if prediction.source_url and not prediction.image:
        data = _prediction_fetch_source(prediction=prediction)
        if data is None:
            return
    else:
        try:
            with prediction.image.open("rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            prediction_mark_failed(
                prediction_id=prediction_id, code="upload_missing", message="The uploaded file is missing."
            )
            return
    try:
        outcome = inference.inference_run(
            model_version=model_version, data=data, title=prediction.title, description=prediction.description
        )
    except ImageError as exc:
        prediction_mark_failed(prediction_id=prediction_id, code=exc.code, message=exc.message)
        return
    except ModelError as exc:
        logger.error("model version %s unavailable: %s", model_version.name, exc)
        prediction_mark_failed(prediction_id=prediction_id, code="model_unavailable", message=str(exc))
        return
    payload = outcome.payload
    prediction_mark_succeeded(
        prediction=prediction,
        model_version=model_version,
        brands=payload["brands"],
        price=payload["price_usd"],
        similar=payload["similar"],
        cutout_jpeg=outcome.cutout_jpeg,
        background_method=outcome.background,
        timings_ms=payload["timings_ms"],
        abstain=payload["abstain"],
        shoe_model=payload["model"],
        shoe_models=payload["models"],
        embedding=getattr(outcome, "embedding", None),
        inputs=getattr(outcome, "inputs", ("image",)),
        nearest_similarity=getattr(outcome, "nearest_similarity", None),
    )


VISITOR_SESSION_KEY = "visitor"
"""Session entry holding the session key under which an anonymous visitor's uploads are stored. Django
changes the session key at login (``cycle_key``) but keeps the session's data, so this is how the uploads
are found again (``prediction_claim_session``)."""


def prediction_claim_session(*, user: AbstractBaseUser, session_key: str | None) -> int:
    """Move an anonymous session's predictions to ``user`` (after sign-up or login in the same browser).

    Returns the number of predictions moved; 0 without a session key. Feedback stays with its prediction.
    """
    if not session_key or not user.is_authenticated:
        return 0
    return Prediction.objects.filter(owner__isnull=True, session_key=session_key).update(owner=user, session_key="")


FEEDBACK_NOTE_MAX = 500


@transaction.atomic
def feedback_create(
    *, prediction: Prediction, kind: str, brand_slug: str, product_id: Any = None, note: str = ""
) -> Feedback:
    """Store a shopper's correction of a succeeded result: "wrong brand" or "wrong model" with the right one.

    Args:
        kind: ``Feedback.Kind`` value.
        brand_slug: the right brand (a catalog brand slug).
        product_id: the right named model (id of a listed ``model`` product of that brand); required for
            ``wrong_model``, optional for ``wrong_brand``.
        note: free text, cut to 500 characters.

    Raises:
        ApplicationError: ``feedback_invalid`` (400) when the result has not succeeded, the kind is unknown,
            the brand does not exist, or the model is missing, unknown or of another brand.
    """
    if prediction.status != Prediction.Status.SUCCEEDED:
        raise ApplicationError("Only a finished result can be corrected.", code="feedback_invalid")
    if kind not in Feedback.Kind.values:
        raise ApplicationError("Say whether the brand or the model is wrong.", code="feedback_invalid")
    brand = Brand.objects.filter(slug=brand_slug).first()
    if brand is None:
        raise ApplicationError("Pick the right brand from the list.", code="feedback_invalid")
    product = None
    if product_id not in (None, ""):
        product = Product.objects.filter(
            id=int(product_id) if str(product_id).isdigit() else -1, kind=Product.Kind.MODEL, is_listed=True
        ).first()
        if product is None or product.brand_id != brand.id:
            raise ApplicationError("Pick a model of the brand you chose.", code="feedback_invalid")
    if kind == Feedback.Kind.WRONG_MODEL and product is None:
        raise ApplicationError("Pick the right model from the list.", code="feedback_invalid")
    return Feedback.objects.create(
        prediction=prediction, kind=kind, brand=brand, product=product, note=note.strip()[:FEEDBACK_NOTE_MAX]
    )


@transaction.atomic
def feedback_add_to_catalog(*, feedback: Feedback) -> ProductImage:
    """Add a corrected photo to the catalog as a training photo of the chosen brand (and model), for the next
    training; mark the feedback ``added``.

    The image is the shopper's original upload, stored like every catalog image (named by its SHA-256);
    its ``style`` stays blank (nobody labelled it), ``source_repo`` is ``feedback`` and ``source_path``
    names the prediction. A photo already in the catalog (same SHA-256) is linked, not copied.

    Raises:
        ApplicationError: ``feedback_no_photo`` (400) when the upload's file is gone or not an image.
    """
    prediction = feedback.prediction
    try:
        with prediction.image.open("rb") as handle:
            data = handle.read()
        info = inspect_image(data)
    except (FileNotFoundError, ValueError, ImageRejected) as exc:
        raise ApplicationError("The photo of this correction is no longer usable.", code="feedback_no_photo") from exc
    sha256 = hashlib.sha256(data).hexdigest()
    image = ProductImage.objects.filter(sha256=sha256).first()
    if image is None:
        image = ProductImage(
            brand=feedback.brand,
            product=feedback.product,
            sha256=sha256,
            width=info.width,
            height=info.height,
            source_repo="feedback",
            source_path=f"predictions/{prediction.id}",
        )
        image.image.save(f"feedback.{FORMAT_EXTENSIONS[info.format]}", ContentFile(data), save=False)
        image.save()
    feedback.catalog_image = image
    feedback.status = Feedback.Status.ADDED
    feedback.reviewed_at = timezone.now()
    feedback.save(update_fields=["catalog_image", "status", "reviewed_at"])
    return image


def feedback_dismiss(*, feedback: Feedback) -> None:
    """Mark a correction ``dismissed`` (staff judged it wrong or unusable)."""
    feedback.status = Feedback.Status.DISMISSED
    feedback.reviewed_at = timezone.now()
    feedback.save(update_fields=["status", "reviewed_at"])
