"""Image embeddings from a Keras backbone (EfficientNet-Lite0 without its top, by default).

TensorFlow and Keras are imported inside ``Backbone.__init__``, not at module import.

Source of the model and its input normalisation: ``../shared/weights/README.md``
(EfficientNet-Lite0, Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019; Lite variant from the TensorFlow TPU models repository). Input RGB in [0, 255]
normalised as ``(x - 127) / 128``; output the 1280-wide global-average-pooled feature vector.

Multi-level descriptor (the default): the pooled output is joined by global-average-pooled
activations of earlier blocks ("taps"), each L2-normalised and weighted, and the photo is embedded at
320 px instead of 224. Intermediate layers keep more of the small print a brand is told by (logos,
stripes, stitching), and a larger input keeps more of it in the pixels; pooling several depths of a
CNN into one descriptor is the recipe of e.g. Yosinski et al. 2014 ("How transferable are features
in deep neural networks?") and Zheng et al. 2016 ("Good practice in CNN feature transfer"). Taps
and weights were chosen on validation log loss (seed-42 grouped split, head-only logistic regression,
blocks 7 to 15 tried). Measured with ``manage.py train`` (head-only, full shared data, seed 42):
224 px pooled only: test top-1 0.878, log loss 0.293; 320 px with ``block7_add``, ``block10_add``,
``block14_add``: 0.928, 0.216; embedding costs about twice as much (more pixels).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from worker.ml.errors import ModelError
from worker.ml.preprocessing import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_OFFSET,
    DEFAULT_SCALE,
    FINGERPRINT_LENGTH,
    LEGACY_INPUT_SIZE,
    BackboneSpec,
    backbone_fingerprint,
    prepare_photo,
)

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_TAPS",
    "FINGERPRINT_LENGTH",
    "INPUT_OFFSET",
    "INPUT_SCALE",
    "INPUT_SIZE",
    "Backbone",
    "BackboneSpec",
    "backbone_fingerprint",
    "file_fingerprint",
    "import_keras",
    "l2_normalise",
    "multi_level_output",
    "tap_scale",
]

logger = logging.getLogger(__name__)

INPUT_SIZE: Final = LEGACY_INPUT_SIZE
"""EfficientNet-Lite0's training size, in pixels: the input side of artifacts made before the
multi-level descriptor (their metadata has no ``backbone_input_size``)."""
DEFAULT_TAPS: Final[tuple[tuple[str, float], ...]] = (("block7_add", 0.4), ("block10_add", 0.5), ("block14_add", 0.7))
"""EfficientNet-Lite0 layers pooled into the descriptor, with their weights (the pooled output has
weight 1). Chosen by validation log loss among blocks 7-15 (module docstring)."""
INPUT_OFFSET: Final = DEFAULT_OFFSET
"""Normalisation ``(x - INPUT_OFFSET) / INPUT_SCALE`` of [0, 255] pixels (weights README); the
defaults of ``BackboneSpec``."""
INPUT_SCALE: Final = DEFAULT_SCALE


def import_keras() -> Any:
    """Import TensorFlow and Keras quietly and return the ``keras`` module.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (hide TensorFlow's C++ INFO and WARNING lines) unless the
    environment already sets it, and the Python ``tensorflow`` logger to ERROR.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import keras

    return keras


def file_fingerprint(path: str | Path) -> str:
    """First ``FINGERPRINT_LENGTH`` hex characters of the SHA-256 of a file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def tap_scale(taps: tuple[tuple[str, float], ...]) -> float:
    """Norm of a multi-level descriptor before L2 normalisation: ``sqrt(1 + sum(weight**2))``.

    Every part is unit-length, so the joined vector always has this length; multiplying an
    L2-normalised embedding by it gives back the raw descriptor.
    """
    return float(np.sqrt(1.0 + sum(weight * weight for _, weight in taps)))


def multi_level_output(pooled: Any, tapped: list[tuple[str, float, Any]]) -> Any:
    """Keras tensor ``(None, D0 + sum(c_i))``: ``[l2(pooled), w_i * l2(avg_pool(tap_i)), ...]``.

    Built from standard Keras layers only (``UnitNormalization``, ``GlobalAveragePooling2D``,
    ``Rescaling``, ``Concatenate``), so a model using it saves and loads with no custom code.

    Args:
        pooled: ``(None, D0)`` tensor, the backbone's pooled output.
        tapped: ``(layer name, weight, (None, h, w, c) tensor)`` per tap; empty: just ``l2(pooled)``.
    """
    keras = import_keras()
    parts = [keras.layers.UnitNormalization(name="mld_top_l2")(pooled)]
    for name, weight, tensor in tapped:
        part = keras.layers.GlobalAveragePooling2D(name=f"mld_{name}_pool")(tensor)
        part = keras.layers.UnitNormalization(name=f"mld_{name}_l2")(part)
        parts.append(keras.layers.Rescaling(float(weight), name=f"mld_{name}_weight")(part))
    if len(parts) == 1:
        return parts[0]
    return keras.layers.Concatenate(name="mld_concat")(parts)


class Backbone:
    """A Keras image model used as a fixed feature extractor.

    Works for any single-input Keras 3 model with input ``(None, None, None, 3)`` or
    ``(None, h, w, 3)`` and a 2-D output ``(None, D)``, or two 2-D outputs ``[(None, D), (None, D0)]``:
    a fine-tuned backbone can carry the original ImageNet pooled features as its second output
    ("aux"), so the ImageNet footwear detector needs no second network; a one-output model's aux
    features are its pooled output. A one-output model with ``taps`` is wrapped so that its output
    is the multi-level descriptor (``multi_level_output``, module docstring); a two-output model is
    used as it is (a fine-tuned file already has its taps inside). Inputs are uint8 RGB; the model is
    called directly (``model(x, training=False)``) inside a ``tf.function`` with a shape-agnostic
    signature, which avoids ``Model.predict``'s per-call overhead and retracing per batch size.

    Args:
        path: a ``.keras`` file, e.g. ``efficientnet_lite0_imagenet_notop.keras``.
        batch_size: images per forward pass in ``embed``.
        input_size: side, in pixels, of the squares ``preprocess`` makes (default 320).
        taps: ``(layer name, weight)`` pairs; None: those of ``DEFAULT_TAPS`` the model has (none for
            a model without EfficientNet-Lite0's layer names); ``()``: the pooled output alone.
        offset, scale: input normalisation ``(x - offset) / scale`` (EfficientNet-Lite0's by default).

    Attributes:
        path: the model file.
        spec: the ``BackboneSpec`` (input size, normalisation, taps, weights fingerprint) as set up.
        fingerprint: ``spec.fingerprint``: the file, input size and taps (embedding-cache key; stored in
            trained artifacts to check they match the backbone).
        dim: embedding width D (1280 for EfficientNet-Lite0 alone, 1664 with the default taps).
        top_dim: width of the pooled output, the first part of the embedding (1280).
        taps: the taps applied (empty for a two-output model).
        input_size: as given.
        batch_size: as given.
        runtime: what runs ``embed_raw``: ``"tensorflow"``, or ``"openvino"`` after ``serve_with``.
        precision: what ``embed_raw`` computes in: ``"f32"``, or ``"bf16"`` after ``serve_with(precision=...)``.
        cache_key: what caches of this backbone's embeddings are keyed by: ``fingerprint``, with ``-bf16`` after
            it at bfloat16 (its embeddings differ from float32's, cosine 0.997-0.999 on real photos).

    Raises:
        ModelError: the file is missing or Keras cannot load it, the model's input or output does
            not have the shapes above, or an explicit tap names a layer the model lacks.
        ValueError: ``batch_size < 1`` or ``input_size < 32``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 32,
        input_size: int = DEFAULT_INPUT_SIZE,
        taps: tuple[tuple[str, float], ...] | None = None,
        offset: float = DEFAULT_OFFSET,
        scale: float = DEFAULT_SCALE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if input_size < 32:
            raise ValueError(f"input_size must be at least 32 pixels, got {input_size}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.input_size = int(input_size)
        if not self.path.is_file():
            raise ModelError(f"backbone model file not found: {self.path}")
        try:
            file_hex = file_fingerprint(self.path)
        except OSError as exc:
            raise ModelError(f"cannot read backbone model {self.path}: {exc}") from exc
        keras = import_keras()
        import tensorflow as tf

        try:
            model = keras.saving.load_model(self.path, compile=False)
        except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors, ...
            raise ModelError(f"cannot load backbone model {self.path}: {exc}") from exc
        input_shape = model.input_shape
        output_shape = model.output_shape
        aux_shape = None
        if isinstance(output_shape, list) and len(output_shape) == 2:
            output_shape, aux_shape = output_shape
        if (
            not isinstance(input_shape, tuple)
            or len(input_shape) != 4
            or input_shape[-1] != 3
            or not isinstance(output_shape, tuple)
            or len(output_shape) != 2
            or not output_shape[-1]
            or (aux_shape is not None and (not isinstance(aux_shape, tuple) or len(aux_shape) != 2))
        ):
            raise ModelError(
                f"{self.path}: expected input (None, H, W, 3) and output (None, D), got {input_shape} -> {output_shape}"
            )
        self._model = model
        self.has_aux: bool = aux_shape is not None
        names = {layer.name for layer in model.layers}
        if self.has_aux:
            taps = ()
        elif taps is None:
            taps = tuple((name, weight) for name, weight in DEFAULT_TAPS if name in names)
        else:
            missing = [name for name, _ in taps if name not in names]
            if missing:
                raise ModelError(f"{self.path}: no layer {missing} to tap")
        self.taps: tuple[tuple[str, float], ...] = tuple((str(n), float(w)) for n, w in taps)
        self.top_dim: int = int(output_shape[-1])
        if self.taps:
            tapped = [(name, weight, model.get_layer(name).output) for name, weight in self.taps]
            model = keras.Model(
                model.inputs[0], [multi_level_output(model.outputs[0], tapped), model.outputs[0]], name="multi_level"
            )
            output_shape, aux_shape = model.output_shape
        self.spec = BackboneSpec(
            input_size=self.input_size, offset=offset, scale=scale, taps=self.taps, weights_fingerprint=file_hex
        )
        self.fingerprint = self.spec.fingerprint
        self.dim: int = int(output_shape[-1])
        self.aux_dim: int = int(aux_shape[-1]) if aux_shape is not None else self.dim
        fixed = input_shape[1:3]
        self._fixed_size: tuple[int, int] | None = (int(fixed[0]), int(fixed[1])) if fixed[0] and fixed[1] else None
        self._tf = tf

        signature = [tf.TensorSpec(shape=(None, None, None, 3), dtype=tf.uint8)]

        spec = self.spec

        def normalise(x: Any) -> Any:
            return (tf.cast(x, tf.float32) - spec.offset) / spec.scale

        def both(y: Any) -> Any:
            out = model(y, training=False)
            return (out[0], out[1]) if isinstance(out, list | tuple) else (out, out)

        @tf.function(input_signature=signature)
        def forward(x: Any) -> Any:
            return both(normalise(x))

        self._forward = forward
        self._openvino: Any = None
        self._openvino_size: tuple[int, int] | None = None
        self.runtime = "tensorflow"
        self.precision = "f32"
        self._forward_resized: Any = None
        if self._fixed_size is not None:
            size = self._fixed_size

            @tf.function(input_signature=signature)
            def forward_resized(x: Any) -> Any:
                resized = tf.image.resize(normalise(x), size, method="bilinear", antialias=True)
                return both(resized)

            self._forward_resized = forward_resized

    @classmethod
    def from_spec(cls, path: str | Path, spec: BackboneSpec, *, batch_size: int = 32) -> Backbone:
        """The backbone of ``path`` set up as ``spec`` says (input size, taps, normalisation).

        Raises:
            ModelError, ValueError: as the constructor.
        """
        return cls(
            path,
            batch_size=batch_size,
            input_size=spec.input_size,
            taps=spec.taps,
            offset=spec.offset,
            scale=spec.scale,
        )

    def serve_with(
        self,
        runtime: str,
        *,
        cache_dir: str | Path,
        threads: int | None = None,
        threads_now: Callable[[], int] | None = None,
        precision: str = "f32",
    ) -> str:
        """Run ``embed_raw`` on ``runtime`` from now on: ``auto``, ``openvino`` or ``native`` (TensorFlow).

        OpenVINO (``worker.ml.runtimes``, CPU plugin at float32) runs the same forward function as TensorFlow
        (normalisation, taps, both outputs) with the same results (largest difference 8e-6 on the embedding) in
        about 0.65 of the time (one thread, 320 px: 19-21 ms against 29-31 ms here; README "Speed"). The
        function is saved once as a frozen TensorFlow graph under ``cache_dir`` (a file named by the backbone's
        ``fingerprint``; about 1 s, then 0.1 s to read) and read by OpenVINO's TensorFlow frontend.
        ``auto`` keeps TensorFlow when it sees a GPU, and when OpenVINO cannot take the backbone (an unwritable
        ``cache_dir``, say; a warning is logged), since TensorFlow gives the same answers. Inputs of another size
        than a fixed-size model's stay on TensorFlow (they need its resize); ``embed`` and ``embed_raw`` give the
        same results either way.

        Args:
            runtime: one of ``worker.ml.runtimes.INFERENCE_RUNTIMES``.
            cache_dir: folder for the frozen forward function (created when missing).
            threads, threads_now: OpenVINO threads per call (see ``worker.ml.runtimes.OpenVinoNetwork``).
            precision: on OpenVINO, ``f32``, ``bf16`` or ``auto`` (``worker.ml.runtimes.precision_resolve``:
                ``bf16`` on CPUs with AVX-512 BF16 or AMX). bfloat16 took 13.0 ms against 20.7 ms per photo (one
                thread, 320 px) and its embeddings agreed with float32's at cosine 0.997-0.999 on 30 real photos
                (README "Speed", fifth round). TensorFlow always computes float32.

        Returns:
            The runtime now in use: ``"openvino"`` or ``"tensorflow"``.

        Raises:
            ValueError: unknown runtime.
            ModelError: ``openvino`` asked for by name and not installed, or the function cannot be saved, read or
                compiled.
        """
        from worker.ml.runtimes import precision_resolve, runtime_resolve

        if runtime_resolve(runtime, gpu=bool(self._tf.config.list_physical_devices("GPU"))) == "native":
            precision_resolve(precision, runtime="tensorflow")  # refuses an unknown precision
            self._openvino, self.runtime, self.precision = None, "tensorflow", "f32"
            return self.runtime
        resolved = precision_resolve(precision, runtime="openvino")
        try:
            self._openvino = self._openvino_network(Path(cache_dir), threads, threads_now, resolved)
        except ModelError as exc:
            if runtime != "auto":
                raise
            # Same answers on TensorFlow, so a backbone OpenVINO cannot take stays there.
            logger.warning("backbone stays on TensorFlow: %s", exc)
            self._openvino, self.runtime, self.precision = None, "tensorflow", "f32"
            return self.runtime
        self.runtime, self.precision = "openvino", resolved
        return self.runtime

    @property
    def cache_key(self) -> str:
        """``fingerprint``, with ``-<precision>`` after it unless float32 (see the class's attributes)."""
        return self.fingerprint if self.precision == "f32" else f"{self.fingerprint}-{self.precision}"

    def _openvino_network(
        self, cache_dir: Path, threads: int | None, threads_now: Callable[[], int] | None, precision: str = "f32"
    ) -> Any:
        """The frozen forward function (``_saved_forward``) read by OpenVINO for this backbone's input size, any
        batch, compiled per thread count at ``precision``; sets ``_openvino_size``.

        Raises:
            ModelError: it cannot be saved, read or compiled, or its outputs are not ``[dim, aux_dim]`` wide.
        """
        import openvino as ov

        from worker.ml.runtimes import OpenVinoNetwork

        path = self._saved_forward(cache_dir)
        side = self._fixed_size or (self.input_size, self.input_size)
        try:
            model = ov.Core().read_model(str(path))
            model.reshape({model.inputs[0]: ov.PartialShape([-1, side[0], side[1], 3])})
        except RuntimeError as exc:
            raise ModelError(f"OpenVINO cannot read the backbone saved at {path}: {exc}") from exc
        widths = [output.get_partial_shape()[-1].get_length() for output in model.outputs]
        if len(widths) != 2 or widths[0] != self.dim or widths[1] != self.aux_dim:
            raise ModelError(f"the backbone read by OpenVINO has outputs {widths}, not [{self.dim}, {self.aux_dim}]")
        network = OpenVinoNetwork(
            model, threads=threads, threads_now=threads_now, name="the backbone", precision=precision
        )
        self._openvino_size = side
        return network

    def _saved_forward(self, cache_dir: Path) -> Path:
        """The forward function as a frozen TensorFlow graph (weights as constants, TensorFlow's
        ``convert_variables_to_constants_v2``) in ``cache_dir/backbone-<fingerprint>.pb``, made once (written
        beside it, then renamed, so a reader never sees half a file; about 1 s and 14 MB for EfficientNet-Lite0).

        Raises:
            ModelError: the file cannot be made or written.
        """
        import tempfile

        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        target = cache_dir / f"backbone-{self.fingerprint}.pb"
        if target.is_file():
            return target
        staging: Path | None = None
        try:
            frozen = convert_variables_to_constants_v2(self._forward.get_concrete_function())
            data = frozen.graph.as_graph_def().SerializeToString()
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=f".{target.name}-", delete=False) as handle:
                staging = Path(handle.name)
                handle.write(data)
            staging.replace(target)
        except Exception as exc:  # TensorFlow raises many types while freezing; OSError while writing
            if staging is not None:
                staging.unlink(missing_ok=True)
            raise ModelError(f"cannot save the backbone for OpenVINO in {cache_dir}: {exc}") from exc
        return target

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """The backbone input of a photo used as it is: ``prepare_photo(rgb, self.spec).square``.

        Args:
            rgb: ``(H, W, 3) uint8`` RGB.

        Returns:
            ``(input_size, input_size, 3) uint8`` RGB.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        return prepare_photo(rgb, self.spec).square

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embed a stack of square RGB images.

        Args:
            images: ``(N, S, S, 3) uint8`` RGB in [0, 255] (S = ``input_size`` normally; any S works; a model with
                a fixed input size gets the images resized to it, bilinear with antialiasing).

        Returns:
            ``(N, D) float32``, each row L2-normalised (a zero row stays zero).

        Raises:
            ValueError: ``images`` is not a 4-D uint8 array with 3 channels.
        """
        return l2_normalise(self.embed_raw(images)[0])

    def embed_raw(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Un-normalised outputs of the model: the embedding and the aux (original ImageNet) features.

        Args:
            images: as ``embed``.

        Returns:
            ``(raw (N, D) float32, aux (N, D0) float32)``; ``aux`` is the original pooled output (for
            a one-output model without taps ``aux`` is ``raw``), what the ImageNet classifier's Dense
            layer expects (``worker.ml.abstain``). With taps, ``raw`` is the multi-level descriptor,
            whose length is ``tap_scale(taps)``.

        Raises:
            ValueError: ``images`` is not a 4-D uint8 array with 3 channels.
        """
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                "expected an (N, S, S, 3) uint8 array, got "
                f"{getattr(images, 'shape', None)} {getattr(images, 'dtype', type(images).__name__)}"
            )
        count = images.shape[0]
        if count == 0:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros((0, self.aux_dim), dtype=np.float32)
        forward = self._forward
        if self._openvino is not None and tuple(images.shape[1:3]) == self._openvino_size:
            forward = self._openvino
        elif self._fixed_size is not None and tuple(images.shape[1:3]) != self._fixed_size:
            forward = self._forward_resized
        chunks, aux_chunks = [], []
        for start in range(0, count, self.batch_size):
            batch = images[start : start + self.batch_size]
            if forward is self._openvino:
                main, aux = forward(np.ascontiguousarray(batch))
            else:
                main, aux = forward(self._tf.convert_to_tensor(batch))
            chunks.append(np.asarray(main, dtype=np.float32))
            aux_chunks.append(np.asarray(aux, dtype=np.float32))
        raw = np.concatenate(chunks, axis=0).reshape(count, self.dim)
        return raw, np.concatenate(aux_chunks, axis=0).reshape(count, self.aux_dim)

    @property
    def model(self) -> Any:
        """The Keras model as loaded from ``path``, before any multi-level wrapping (for
        ``worker.ml.finetune``)."""
        return self._model


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Divide each row of an ``(N, D)`` array by its Euclidean norm; zero rows stay zero.

    Returns:
        ``(N, D) float32``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
