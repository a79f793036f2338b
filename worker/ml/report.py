"""PNG plots of a trained model version: confusion matrix, reliability diagram, validation curve.

Drawn with matplotlib's non-interactive Agg backend (no display needed). The reliability diagram
follows Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017): per confidence bin, the
accuracy against the mean confidence; a calibrated model lies on the diagonal.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

DPI = 100


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot

    return pyplot, pyplot.figure(figsize=(width, height), dpi=DPI)


def _png(pyplot, figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def confusion_png(labels: Sequence[str], matrix: Sequence[Sequence[int]], *, title: str = "Test confusion") -> bytes:
    """A confusion-matrix heat map (rows: true brand, columns: predicted), counts written in cells.

    Args:
        labels: C class names.
        matrix: ``(C, C)`` integer counts.

    Returns:
        PNG bytes (about 5x4.5 inches at 100 dpi).

    Raises:
        ValueError: ``matrix`` is not ``(C, C)``.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix {counts.shape} does not match {len(labels)} labels")
    pyplot, figure = _figure(5.0, 4.5)
    axes = figure.add_subplot()
    axes.imshow(counts, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    peak = counts.max() if counts.size else 0
    for (row, column), value in np.ndenumerate(counts):
        colour = "white" if peak and value > peak / 2 else "black"
        axes.text(column, row, str(value), ha="center", va="center", color=colour)
    return _png(pyplot, figure)


def reliability_png(curves: Mapping[str, Mapping[str, Sequence[float | None]]], *, title: str) -> bytes:
    """A reliability diagram with one line per named curve (e.g. before/after temperature scaling).

    Args:
        curves: name -> ``{"confidence": [...], "accuracy": [...]}`` per bin (None for empty bins),
            as ``worker.ml.evaluation.reliability_bins`` returns.
        title: plot title (put the ECE figures in it).

    Returns:
        PNG bytes.
    """
    pyplot, figure = _figure(5.0, 4.5)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for name, curve in curves.items():
        points = [(c, a) for c, a in zip(curve["confidence"], curve["accuracy"], strict=True) if c is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-1 probability)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left")
    return _png(pyplot, figure)


def curve_png(
    xs: Sequence[float], ys: Sequence[float], *, xlabel: str, ylabel: str, title: str, log_x: bool = False
) -> bytes:
    """A simple line plot, e.g. validation log loss against the regularisation strength C.

    Returns:
        PNG bytes.

    Raises:
        ValueError: ``xs`` and ``ys`` differ in length.
    """
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    pyplot, figure = _figure(5.0, 3.5)
    axes = figure.add_subplot()
    axes.plot(xs, ys, marker="o")
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return _png(pyplot, figure)
