"""Errors raised by ``worker.ml``; standard library only (safe to import in the web process)."""

from __future__ import annotations

from typing import Final

IMAGE_TOO_LARGE: Final = "image_too_large"
IMAGE_UNREADABLE: Final = "image_unreadable"
IMAGE_TOO_MANY_PIXELS: Final = "image_too_many_pixels"

IMAGE_ERROR_CODES: Final = (IMAGE_TOO_LARGE, IMAGE_UNREADABLE, IMAGE_TOO_MANY_PIXELS)
"""What the worker's decoder (``worker.ml.images.load_rgb``) can say about bytes. The upload checks
(``catalog.images.inspect_image``) refuse more (empty, unsupported format, too small) before a photo
ever reaches a worker; the codes are the same strings, the API's ``error.code``."""

MODEL_UNAVAILABLE: Final = "model_unavailable"


class ImageError(Exception):
    """The worker could not decode these bytes into a photo. A permanent error: do not retry.

    Attributes:
        code: one of ``IMAGE_ERROR_CODES``: ``image_too_large`` (more bytes than the limit),
            ``image_unreadable`` (not an image, truncated or corrupt), ``image_too_many_pixels``
            (width x height over the limit; decompression bombs).
        message: a sentence for people (English), safe to show to the uploader.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in IMAGE_ERROR_CODES:
            raise ValueError(f"unknown image error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ImageError(code={self.code!r}, message={self.message!r})"


class ModelError(Exception):
    """A model file or trained artifact is missing, unreadable or inconsistent.

    An operational error (the deployment is broken), not a problem with the uploaded image.

    Attributes:
        code: always ``"model_unavailable"``.
        message: what is missing or wrong, naming the file where there is one.
    """

    code: str = MODEL_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"ModelError(code={self.code!r}, message={self.message!r})"
