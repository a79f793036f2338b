"""Which library runs a network on the CPU: OpenVINO, or the network's own library (TensorFlow, onnxruntime).

Both networks of a prediction (U^2-Net-p for the background, EfficientNet-Lite0 for the embedding) give the same
outputs under OpenVINO's CPU plugin at float32 precision as under their own libraries (largest difference on real
photos: 8e-5 for U^2-Net-p's mask, 9e-6 for the embedding). Measured one thread at a time on this project's 2-core
machine (AMD EPYC with AVX-512 BF16; README "Speed"): the backbone at 320 px took 19-21 ms against TensorFlow's
29-31 ms; U^2-Net-p at 256 px 291 ms against onnxruntime's 289-300 ms (the same), and 151 ms at bfloat16
(``precision="bf16"``, which changes masks a little: see ``worker.ml.background.U2NetpRemover``).

Settings chosen here, from OpenVINO's CPU plugin documentation ("CPU Device", "High-level Performance Hints"):

- ``INFERENCE_PRECISION_HINT`` always set, never left to the plugin: on CPUs with AVX-512 BF16 or AMX the plugin's
  default is bfloat16, which moved U^2-Net-p's saliency by up to 0.76 (of 1) here. Each network runs at what its
  caller asks (``precision_resolve``): the platform serves both at bfloat16 where the CPU has it, trains on
  bfloat16 U^2-Net-p masks and float32 embeddings (README "Speed", fifth round).
- ``PERFORMANCE_HINT = LATENCY``: one stream, one photo at a time.
- ``INFERENCE_NUM_THREADS``: the caller's thread budget (one per inference process in the Procfile).
- ``ENABLE_CPU_PINNING = False``: pinned threads of two worker processes could land on the same core.

Models are read with ``openvino.Core.read_model`` (ONNX and TensorFlow SavedModel files through OpenVINO's
frontends), never with ``openvino.convert_model``, whose Python tooling sends usage telemetry by default.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from worker.ml.errors import ModelError

INFERENCE_RUNTIMES: Final = ("auto", "openvino", "native")
"""Accepted runtime names: ``auto`` (OpenVINO on the CPU when installed and no GPU is in use), ``openvino``,
``native`` (the network's own library: TensorFlow for the backbone, onnxruntime for U^2-Net-p)."""


def openvino_installed() -> bool:
    """True when the ``openvino`` package imports."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_resolve(name: str, *, gpu: bool) -> str:
    """The runtime to use, ``"openvino"`` or ``"native"``, for a setting and the native library's view of a GPU.

    Args:
        name: one of ``INFERENCE_RUNTIMES``.
        gpu: the native library would run on a GPU (onnxruntime's CUDA provider, TensorFlow's GPU device);
            ``auto`` then stays native, since this module drives OpenVINO's CPU plugin only.

    Raises:
        ValueError: unknown name.
        ModelError: ``openvino`` asked for but the package is not installed.
    """
    if name not in INFERENCE_RUNTIMES:
        raise ValueError(f"unknown inference runtime {name!r}; expected one of {INFERENCE_RUNTIMES}")
    if name == "native":
        return "native"
    if name == "openvino":
        if not openvino_installed():
            raise ModelError("inference runtime 'openvino' needs the openvino package (pip install openvino)")
        return "openvino"
    return "native" if gpu or not openvino_installed() else "openvino"


PRECISIONS: Final = ("f32", "bf16")
"""Inference precisions OpenVINO is asked for: float32 (the networks' own), or bfloat16 on CPUs with AVX-512 BF16
or AMX."""
PRECISION_SETTINGS: Final = ("auto", *PRECISIONS)
"""Precisions a caller may ask for: ``auto`` is ``bf16`` where OpenVINO runs it natively (``precision_resolve``)."""


@functools.cache
def cpu_has_bf16() -> bool:
    """True when OpenVINO's CPU plugin lists ``BF16`` among its ``OPTIMIZATION_CAPABILITIES`` (native AVX-512 BF16
    or AMX instructions; OpenVINO's "CPU Device" documentation); False when it does not, or when OpenVINO is not
    installed or cannot be asked. Asked once per process."""
    try:
        import openvino as ov

        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except (ImportError, RuntimeError):
        return False


def precision_resolve(precision: str, *, runtime: str) -> str:
    """The precision to run at, ``"f32"`` or ``"bf16"``, for a setting and the runtime in use.

    Args:
        precision: one of ``PRECISION_SETTINGS``. ``auto``: ``bf16`` when ``runtime`` is ``"openvino"`` and the CPU
            has native bfloat16 (``cpu_has_bf16``), else ``f32`` (onnxruntime and TensorFlow here run float32;
            OpenVINO without native bfloat16 would compute it at float32 anyway). ``f32`` and ``bf16``: as asked.
        runtime: ``"openvino"`` or the name of another runtime.

    Raises:
        ValueError: unknown precision.
    """
    if precision not in PRECISION_SETTINGS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISION_SETTINGS}")
    if precision != "auto":
        return precision
    return "bf16" if runtime == "openvino" and cpu_has_bf16() else "f32"


def cpu_config(threads: int | None, precision: str = "f32") -> dict[str, Any]:
    """OpenVINO CPU plugin properties for ``threads`` threads (None or 0: the plugin's choice, every core) at
    ``precision`` (one of ``PRECISIONS``; a CPU without bfloat16 instructions runs ``bf16`` at float32).

    See the module docstring for why each is set.

    Raises:
        ValueError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": int(threads or 0),
        "ENABLE_CPU_PINNING": False,
    }


class OpenVinoNetwork:
    """An OpenVINO model compiled for the CPU once per thread count, run with one infer request per calling thread.

    Args:
        model: an ``openvino.Model`` (``openvino.Core().read_model(path)``, reshaped as needed).
        threads: thread count when ``threads_now`` is None (None: every core).
        threads_now: called before each run for the thread count it may use now (e.g.
            ``worker.ml.occupancy.Occupancy.threads_now``); a compiled model per count is made on first use.
        name: what to call the network in error messages.
        precision: ``f32`` or ``bf16`` (``cpu_config``).

    Raises:
        ModelError: OpenVINO cannot compile the model.
        ValueError: unknown precision.
    """

    def __init__(
        self,
        model: Any,
        *,
        threads: int | None = None,
        threads_now: Callable[[], int] | None = None,
        name: str = "network",
        precision: str = "f32",
    ) -> None:
        import openvino as ov

        cpu_config(threads, precision)  # refuses an unknown precision before any compiling
        self.precision = precision
        self._core = ov.Core()
        self._model = model
        self.threads = threads
        self.threads_now = threads_now
        self.name = name
        self._compiled: dict[int | None, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._compiled_for(threads)

    def _compiled_for(self, threads: int | None) -> Any:
        """The model compiled with ``threads`` threads, made once.

        Raises:
            ModelError: OpenVINO cannot compile it.
        """
        with self._lock:
            compiled = self._compiled.get(threads)
            if compiled is None:
                try:
                    compiled = self._core.compile_model(self._model, "CPU", cpu_config(threads, self.precision))
                except RuntimeError as exc:
                    raise ModelError(f"OpenVINO cannot compile {self.name}: {exc}") from exc
                self._compiled[threads] = compiled
            return compiled

    def __call__(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Run the network on one input array; returns its outputs in the model's order, as NumPy arrays.

        Args:
            inputs: the model's only input, shaped and typed as it expects (e.g. ``(1, 3, S, S) float32``).
        """
        threads = self.threads_now() if self.threads_now is not None else self.threads
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(threads)
        if request is None:
            request = requests[threads] = self._compiled_for(threads).create_infer_request()
        request.infer({0: inputs})
        return [np.array(request.get_output_tensor(i).data) for i in range(len(request.model_outputs))]
