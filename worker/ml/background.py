"""Background removal: U^2-Net-p (onnxruntime), OpenCV GrabCut, or none.

A remover maps an ``(H, W, 3) uint8`` RGB photo to a ``Cutout``: the photo composited onto white
through a soft foreground mask. ``remove_background`` adds the policy around it: skip photos that
already are product shots on a plain background, reject degenerate masks, crop to the shoe.

onnxruntime and OpenCV are imported inside the constructors and calls, never at module import.

Sources:
- U^2-Net: Qin et al., "U^2-Net: Going Deeper with Nested U-Structure for Salient Object Detection",
  Pattern Recognition 106, 2020. Small ``u2netp`` variant as an ONNX file; pre- and post-processing as
  described in ``../shared/weights/README.md`` (the same as the ``rembg`` project's ``u2netp`` session).
- GrabCut: Rother, Kolmogorov, Blake, "GrabCut: interactive foreground extraction using iterated graph
  cuts", SIGGRAPH 2004; OpenCV ``cv2.grabCut`` with ``GC_INIT_WITH_RECT``
  (https://docs.opencv.org/4.x/d8/d83/tutorial_py_grabcut.html).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from worker.ml.errors import ModelError
from worker.ml.images import check_rgb, has_plain_background

logger = logging.getLogger(__name__)

U2NET_SIZE: Final = 320
"""Input side of U^2-Net-p, in pixels."""
IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
"""ImageNet per-channel mean of RGB in [0, 1] (torchvision's normalisation, used by U^2-Net)."""
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
"""ImageNet per-channel standard deviation of RGB in [0, 1]."""

MIN_FOREGROUND: Final = 0.02
"""Masks covering less than this share of the pixels (at 0.5) are rejected as degenerate."""
MAX_FOREGROUND: Final = 0.98
"""Masks covering more than this share of the pixels (at 0.5) are rejected as degenerate."""
CROP_MARGIN: Final = 0.08
"""Margin kept around the mask's bounding box when cropping, as a fraction of the box's longer side."""

REMOVER_METHODS: Final = ("u2netp", "grabcut", "none")
"""Names accepted by ``make_remover``."""


def thread_budget() -> int | None:
    """Threads one inference may use in this process: ``OMP_NUM_THREADS`` when set to a positive integer (the
    Procfile's inference worker sets it for each of its pool processes, so that two processes each running a
    photo do not fight over the two cores), else None (the library's default: every core).

    onnxruntime does not read ``OMP_NUM_THREADS`` itself (its CPU build has its own thread pool); TensorFlow
    reads ``TF_NUM_INTRAOP_THREADS``, which the Procfile sets alongside.
    """
    try:
        threads = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return threads if threads > 0 else None


@dataclass(frozen=True, eq=False)
class Cutout:
    """A photo with its background replaced by white.

    Attributes:
        image: ``(H, W, 3) uint8`` RGB, the shoe composited onto white (or the photo unchanged).
        mask: ``(H, W) float32`` foreground alpha in [0, 1], same H and W as ``image``.
        method: how it was made: a remover's ``name`` (``"u2netp"``, ``"grabcut"``, ``"none"``),
            ``"skipped"`` (plain background, no removal), or ``"<name>-rejected"`` (degenerate mask,
            photo kept as it was).
    """

    image: np.ndarray
    mask: np.ndarray
    method: str


class Remover(Protocol):
    """Anything that turns an ``(H, W, 3) uint8`` RGB photo into a full-frame ``Cutout``."""

    name: str

    def __call__(self, rgb: np.ndarray) -> Cutout:
        """Return the photo composited onto white through the foreground mask, uncropped."""
        ...


def remover_cache_key(remover: Remover | None) -> str:
    """A name for what ``remover`` makes, for caches of prepared photos: its ``cache_key`` when it has one
    (U^2-Net-p: ``u2netp-<input px>-<precision>``, since the input size and precision change its masks), else
    its ``name``; ``"none"`` for None."""
    if remover is None:
        return "none"
    return str(getattr(remover, "cache_key", remover.name))


def composite_on_white(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Alpha-blend a photo onto white: ``rgb * mask + 255 * (1 - mask)``.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB.
        mask: ``(H, W) float32`` alpha in [0, 1].

    Returns:
        ``(H, W, 3) uint8`` RGB.

    Raises:
        ValueError: shapes do not match.
    """
    check_rgb(rgb)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {rgb.shape[:2]}")
    alpha = mask[..., None].astype(np.float32)
    blended = rgb.astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


class NoRemover:
    """Keeps the photo as it is; the mask is all ones. ``name == "none"``."""

    name: str = "none"

    def __call__(self, rgb: np.ndarray) -> Cutout:
        """Return ``Cutout(rgb, ones((H, W), float32), "none")``.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        check_rgb(rgb)
        return Cutout(image=rgb, mask=np.ones(rgb.shape[:2], dtype=np.float32), method=self.name)


def free_spatial_dims(path: str | Path) -> bytes:
    """The ONNX model at ``path`` with the height and width (axes 2 and 3) of its inputs and outputs made free
    dimensions (``dim_param`` ``"height"`` / ``"width"``), serialised; weights and nodes unchanged.

    For U^2-Net-p (see ``U2NetpRemover``): its file fixes them at 320, which onnxruntime takes as a promise and
    folds shapes computed from them into constants.

    Raises:
        ModelError: the ``onnx`` package is missing, or the file cannot be parsed.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ModelError("a U^2-Net-p input size other than 320 needs the onnx package (pip install onnx)") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others for corrupt files
        raise ModelError(f"cannot parse ONNX model {path}: {exc}") from exc
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for axis, name in ((2, "height"), (3, "width")):
            if len(dims) > axis:
                dims[axis].ClearField("dim_value")
                dims[axis].dim_param = name
    return model.SerializeToString()


class U2NetpRemover:
    """Salient-object mask from U^2-Net-p (ONNX), run with OpenVINO or onnxruntime. ``name == "u2netp"``.

    Pre-processing (``../shared/weights/README.md``): RGB resized to ``input_size`` squared (OpenCV
    ``INTER_AREA``), divided by the image's maximum value, minus ImageNet mean, divided by ImageNet std, NCHW
    float32. Post-processing: first of the 7 outputs, ``(1, 1, S, S)``, min-max normalised to [0, 1] and resized
    (bilinear) back to the photo's size.

    Runtime (``worker.ml.runtimes``): OpenVINO's CPU plugin at float32 gives the same masks as onnxruntime (largest
    difference 8e-5) in the same time (256 px, one thread, on this project's 2-core machine: 291 ms against
    289-300 ms; README "Speed"), and at bfloat16 (``precision``) in about half; ``auto`` takes OpenVINO unless
    onnxruntime has its CUDA provider.

    Other input sides: the file declares its input as ``(1, 3, 320, 320)``. OpenVINO reshapes the read model to
    the side asked for. onnxruntime folds the graph's ``Shape`` nodes into constants for the declared size, so
    another size fails there (``Concat_43``); the network itself is fully convolutional and sizes each upsampling
    from the tensor it joins (``Shape`` -> ``Resize``), so for onnxruntime the height and width of the graph's
    input and outputs are rewritten as free dimensions (``free_spatial_dims``, the ``onnx`` package, in memory;
    the file is untouched). Any side works (multiples of 32 divide evenly through its five poolings). Cost scales
    with the pixel count; the masks differ from 320's, and what that costs in accuracy is measured in
    ``benchmarks/bench_speed.py`` section ``background``.

    Args:
        model_path: the ``u2netp.onnx`` file.
        input_size: side, in pixels, of the square the photo is resized to (U^2-Net was trained at 320).
        intra_op_threads: threads per photo; None: ``thread_budget()`` (``OMP_NUM_THREADS``), else the
            runtime's default (all cores).
        threads_now: called before each photo for the thread count it may use now (e.g.
            ``worker.ml.occupancy.Occupancy.threads_now``: every core when the host's other inference
            processes are idle, one when they are busy); a session (compiled model) per count is made on first
            use, since a thread pool is fixed. None: always ``intra_op_threads``.
        spinning: let onnxruntime's idle pool threads spin (busy-wait) for work between operators. Off by
            default: the worker shares its cores with the web process and another pool process, where
            spinning threads burn the time others need (onnxruntime's threading documentation,
            ``session.intra_op.allow_spinning``).
        runtime: ``auto``, ``openvino`` or ``native`` (onnxruntime); see ``worker.ml.runtimes``. With ``auto``, a
            file OpenVINO cannot read runs on onnxruntime (with a warning in the log).
        precision: ``f32`` (the network's own), ``bf16``: OpenVINO computes in bfloat16 on CPUs that have it
            (AVX-512 BF16, AMX), about 0.6 times the time; masks agreed with float32's at a median IoU of 0.99
            (10th percentile 0.94) on 97 ``sneakers_wild`` photos, and what that costs in brand top-1 is
            measured in ``benchmarks/bench_speed.py`` section ``background`` (variant ``bf16``); or ``auto``:
            ``bf16`` on OpenVINO with such a CPU, else ``f32`` (``worker.ml.runtimes.precision_resolve``).

    Attributes:
        runtime: the runtime in use, ``"openvino"`` or ``"onnxruntime"``.
        precision: the precision in use, ``"f32"`` or ``"bf16"`` (``auto`` resolved).
        cache_key: ``u2netp-<input_size>-<precision>`` (the precision in use), what caches of prepared photos are
            keyed by (``remover_cache_key``): the masks change with either.

    Raises:
        ModelError: the file is missing, the runtime cannot load it, or ``openvino`` is asked for and not
            installed.
        ValueError: ``input_size`` below 32, an unknown ``runtime`` or ``precision``, or ``bf16`` with
            onnxruntime.
    """

    name: str = "u2netp"

    def __init__(
        self,
        model_path: str | Path,
        *,
        input_size: int = U2NET_SIZE,
        intra_op_threads: int | None = None,
        spinning: bool = False,
        threads_now: Callable[[], int] | None = None,
        runtime: str = "auto",
        precision: str = "f32",
    ) -> None:
        import onnxruntime as ort

        from worker.ml.runtimes import precision_resolve, runtime_resolve

        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"U^2-Net-p model file not found: {path}")
        if input_size < 32:
            raise ValueError(f"input_size must be at least 32 pixels, got {input_size}")
        self.input_size = input_size
        self.model_path = path
        self.spinning = spinning
        self.threads = intra_op_threads if intra_op_threads is not None else thread_budget()
        self.threads_now = threads_now
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        self.runtime = "openvino" if runtime_resolve(runtime, gpu=cuda) == "openvino" else "onnxruntime"
        self.precision = precision_resolve(precision, runtime=self.runtime)
        if self.precision != "f32" and self.runtime != "openvino":
            raise ValueError(f"U^2-Net-p precision {precision!r} needs the openvino runtime")
        self._sessions: dict[int | None, Any] = {}
        self._sessions_lock = threading.Lock()
        if self.runtime == "openvino":
            try:
                self._network = self._openvino_network()
            except ModelError as exc:
                if runtime != "auto" or precision == "bf16":
                    raise
                # A file OpenVINO cannot take may still run on onnxruntime (a corrupt one fails there too).
                logger.warning("U^2-Net-p falls back to onnxruntime: %s", exc)
                self.runtime = "onnxruntime"
                self.precision = "f32"
        self.cache_key = f"{self.name}-{input_size}-{self.precision}"
        if self.runtime == "onnxruntime":
            self._model: str | bytes = str(path) if input_size == U2NET_SIZE else free_spatial_dims(path)
            inputs = self._session(self.threads).get_inputs()
            if len(inputs) != 1:
                raise ModelError(f"{path}: expected one input, found {len(inputs)}")
            self._input_name: str = inputs[0].name

    def _openvino_network(self) -> Any:
        """The file read by OpenVINO, reshaped to ``(1, 3, input_size, input_size)``, compiled per thread count.

        Raises:
            ModelError: OpenVINO cannot read, reshape or compile it.
        """
        import openvino as ov

        from worker.ml.runtimes import OpenVinoNetwork

        try:
            model = ov.Core().read_model(str(self.model_path))
            if len(model.inputs) != 1:
                raise ModelError(f"{self.model_path}: expected one input, found {len(model.inputs)}")
            model.reshape({model.inputs[0]: ov.PartialShape([1, 3, self.input_size, self.input_size])})
        except RuntimeError as exc:  # OpenVINO's frontends raise RuntimeError subclasses for unreadable files
            raise ModelError(f"cannot load U^2-Net-p model {self.model_path}: {exc}") from exc
        return OpenVinoNetwork(
            model, threads=self.threads, threads_now=self.threads_now, name="U^2-Net-p", precision=self.precision
        )

    def _session(self, threads: int | None) -> Any:
        """The onnxruntime session with ``threads`` intra-op threads (None: onnxruntime's default), made once.

        Raises:
            ModelError: onnxruntime cannot load the model.
        """
        import onnxruntime as ort

        with self._sessions_lock:
            if threads in self._sessions:
                return self._sessions[threads]
            options = ort.SessionOptions()
            if threads is not None:
                options.intra_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            available = set(ort.get_available_providers())
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
            try:
                session = ort.InferenceSession(self._model, sess_options=options, providers=providers)
            except Exception as exc:  # onnxruntime raises its own types for corrupt files
                raise ModelError(f"cannot load U^2-Net-p model {self.model_path}: {exc}") from exc
            self._sessions[threads] = session
            return session

    def _saliency(self, x: np.ndarray) -> np.ndarray:
        """The network's first output for a ``(1, 3, S, S) float32`` input, as ``(1, 1, S, S) float32``."""
        if self.runtime == "openvino":
            return self._network(x)[0]
        threads = self.threads_now() if self.threads_now is not None else self.threads
        return self._session(threads).run(None, {self._input_name: x})[0]

    def predict_mask(self, rgb: np.ndarray) -> np.ndarray:
        """Run the network; return the ``(H, W) float32`` foreground probability map in [0, 1].

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        import cv2

        check_rgb(rgb)
        height, width = rgb.shape[:2]
        side = self.input_size
        small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32)
        x /= max(float(x.max()), 1e-6)
        x -= np.asarray(IMAGENET_MEAN, dtype=np.float32)
        x /= np.asarray(IMAGENET_STD, dtype=np.float32)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        saliency = np.asarray(self._saliency(x), dtype=np.float32).reshape(side, side)
        low, high = float(saliency.min()), float(saliency.max())
        saliency = (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)
        mask = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(mask, 0.0, 1.0).astype(np.float32)

    def __call__(self, rgb: np.ndarray) -> Cutout:
        """Return the full-frame cut-out: ``rgb`` composited onto white through the U^2-Net-p mask.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        mask = self.predict_mask(rgb)
        return Cutout(image=composite_on_white(rgb, mask), mask=mask, method=self.name)


class GrabCutRemover:
    """Foreground mask from OpenCV GrabCut, started from a rectangle. ``name == "grabcut"``.

    The photo is downscaled so its longest side is ``work_side`` pixels, GrabCut runs ``iterations``
    rounds from a rectangle inset by ``margin`` of each side (everything outside is background), and
    the binary mask (definite + probable foreground) is resized back (bilinear, so edges are soft).
    OpenCV's RNG is seeded for repeatable results. No weights needed; ~0.1-0.3 s at 320 px.

    Args:
        work_side: longest side, in pixels, of the copy GrabCut works on.
        iterations: GrabCut iterations.
        margin: rectangle inset as a fraction of width and height.
    """

    name: str = "grabcut"

    def __init__(self, *, work_side: int = 320, iterations: int = 5, margin: float = 0.03) -> None:
        if work_side < 16 or iterations < 1 or not 0.0 < margin < 0.5:
            raise ValueError("need work_side >= 16, iterations >= 1 and 0 < margin < 0.5")
        self.work_side = work_side
        self.iterations = iterations
        self.margin = margin

    def predict_mask(self, rgb: np.ndarray) -> np.ndarray:
        """Return the ``(H, W) float32`` foreground mask in [0, 1].

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        import cv2

        check_rgb(rgb)
        height, width = rgb.shape[:2]
        scale = min(1.0, self.work_side / max(height, width))
        small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
        small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        mx, my = max(1, round(small_w * self.margin)), max(1, round(small_h * self.margin))
        rect = (mx, my, max(1, small_w - 2 * mx), max(1, small_h - 2 * my))
        labels = np.zeros((small_h, small_w), dtype=np.uint8)
        bgd_model = np.zeros((1, 65), dtype=np.float64)
        fgd_model = np.zeros((1, 65), dtype=np.float64)
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(bgr, labels, rect, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_RECT)
        except cv2.error:
            # GrabCut fails when one side of the rectangle has too few pixels for its colour models;
            # report "no foreground" so that remove_background keeps the photo as it is.
            return np.zeros((height, width), dtype=np.float32)
        foreground = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
        mask = cv2.resize(foreground, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(mask, 0.0, 1.0).astype(np.float32)

    def __call__(self, rgb: np.ndarray) -> Cutout:
        """Return the full-frame cut-out: ``rgb`` composited onto white through the GrabCut mask.

        Raises:
            ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
        """
        mask = self.predict_mask(rgb)
        return Cutout(image=composite_on_white(rgb, mask), mask=mask, method=self.name)


def make_remover(
    method: str,
    *,
    model_path: str | Path | None = None,
    intra_op_threads: int | None = None,
    threads_now: Callable[[], int] | None = None,
    input_size: int = U2NET_SIZE,
    runtime: str = "auto",
    precision: str = "f32",
) -> Remover:
    """Build a background remover by name.

    Args:
        method: ``"u2netp"``, ``"grabcut"`` or ``"none"``.
        model_path: the ``u2netp.onnx`` file; required for ``"u2netp"``, ignored otherwise.
        intra_op_threads: onnxruntime threads for ``"u2netp"`` (None: ``thread_budget()``, else onnxruntime's
            default).
        threads_now: for ``"u2netp"``, the thread count each photo may use (see ``U2NetpRemover``).
        input_size: for ``"u2netp"``, the side of the square it reads (see ``U2NetpRemover``).
        runtime: for ``"u2netp"``, ``auto``, ``openvino`` or ``native`` (``worker.ml.runtimes``).
        precision: for ``"u2netp"``, ``f32``, ``bf16`` or ``auto`` (see ``U2NetpRemover``).

    Raises:
        ValueError: unknown method or runtime.
        ModelError: ``"u2netp"`` with no path, a missing file, a file the runtime cannot load, or ``openvino``
            asked for and not installed.
    """
    if method == "u2netp":
        if model_path is None:
            raise ModelError("background method 'u2netp' needs a model path")
        return U2NetpRemover(
            model_path,
            input_size=input_size,
            intra_op_threads=intra_op_threads,
            threads_now=threads_now,
            runtime=runtime,
            precision=precision,
        )
    if method == "grabcut":
        return GrabCutRemover()
    if method == "none":
        return NoRemover()
    raise ValueError(f"unknown background method {method!r}; expected one of {REMOVER_METHODS}")


def remove_background(rgb: np.ndarray, remover: Remover, *, skip_plain: bool = True) -> Cutout:
    """Cut the shoe out of a photo, onto white, cropped to the shoe with a margin.

    Policy:
    1. ``skip_plain`` and ``has_plain_background(rgb)``: the photo already is a product shot on a plain
       light background; return it unchanged with an all-ones mask, method ``"skipped"``.
    2. Run ``remover``. If its mask (thresholded at 0.5) covers less than ``MIN_FOREGROUND`` (2 %) or
       more than ``MAX_FOREGROUND`` (98 %) of the pixels, it found nothing useful: return the photo
       unchanged with an all-ones mask, method ``f"{remover.name}-rejected"``.
    3. Otherwise crop the remover's white-composited image and its mask to the mask's bounding box
       widened by ``CROP_MARGIN`` (8 %) of the box's longer side on every side (clipped to the photo),
       so that the shoe fills the frame the backbone sees. Method ``remover.name``.

    Args:
        rgb: ``(H, W, 3) uint8`` RGB photo.
        remover: a ``U2NetpRemover``, ``GrabCutRemover``, ``NoRemover`` or compatible object.
        skip_plain: apply rule 1.

    Returns:
        ``Cutout`` with ``image`` ``(h, w, 3) uint8`` and ``mask`` ``(h, w) float32``, ``h <= H``,
        ``w <= W``.

    Raises:
        ValueError: ``rgb`` is not ``(H, W, 3) uint8``.
    """
    check_rgb(rgb)
    if skip_plain and has_plain_background(rgb):
        return Cutout(image=rgb, mask=np.ones(rgb.shape[:2], dtype=np.float32), method="skipped")
    cutout = remover(rgb)
    if isinstance(remover, NoRemover):
        return cutout
    binary = cutout.mask >= 0.5
    share = float(binary.mean())
    if not MIN_FOREGROUND <= share <= MAX_FOREGROUND:
        return Cutout(
            image=rgb,
            mask=np.ones(rgb.shape[:2], dtype=np.float32),
            method=f"{remover.name}-rejected",
        )
    rows = np.flatnonzero(binary.any(axis=1))
    cols = np.flatnonzero(binary.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    pad = round(CROP_MARGIN * max(bottom - top, right - left))
    height, width = binary.shape
    top, left = max(0, top - pad), max(0, left - pad)
    bottom, right = min(height, bottom + pad), min(width, right + pad)
    return Cutout(
        image=np.ascontiguousarray(cutout.image[top:bottom, left:right]),
        mask=np.ascontiguousarray(cutout.mask[top:bottom, left:right]),
        method=cutout.method,
    )
