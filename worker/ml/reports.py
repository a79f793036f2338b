"""PNG figures of a training run: confusion matrix, reliability diagram, training curves.

Drawn with Matplotlib's non-interactive Agg backend (``matplotlib.figure.Figure`` without pyplot, so
no global state and no display). Reliability diagram as in Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017 (Figure 1): accuracy per confidence bin against the diagonal.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _png(figure: Any) -> bytes:
    """Render a Matplotlib figure to PNG bytes (100 dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def confusion_png(labels: Sequence[str], matrix: Sequence[Sequence[int]], *, title: str = "Confusion (test)") -> bytes:
    """PNG of a confusion matrix (rows true, columns predicted), counts written in the cells.

    Args:
        labels: C class names.
        matrix: ``C x C`` counts.

    Returns:
        PNG bytes.
    """
    from matplotlib.figure import Figure

    values = np.asarray(matrix, dtype=np.float64).reshape(len(labels), len(labels)) if len(labels) else np.zeros((0, 0))
    figure = Figure(figsize=(1.2 + 0.9 * max(1, len(labels)), 1.0 + 0.8 * max(1, len(labels))))
    axes = figure.add_subplot(1, 1, 1)
    rows = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    axes.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            axes.text(
                j, i, str(int(values[i, j])), ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black"
            )
    return _png(figure)


def reliability_png(curves: Mapping[str, Mapping[str, Sequence[Any]]], *, title: str = "Reliability") -> bytes:
    """PNG of reliability diagrams, one line per named curve (e.g. before / after temperature).

    Args:
        curves: ``{name: reliability_bins(...)}`` (``count``, ``accuracy``, ``confidence`` per bin);
            the name may carry the ECE, e.g. ``"after (ECE 0.021)"``.

    Returns:
        PNG bytes.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot(1, 1, 1)
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
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
    return _png(figure)


def curves_png(
    series: Mapping[str, Sequence[float]], *, x_label: str, title: str, x_values: Sequence[Any] | None = None
) -> bytes:
    """PNG of one or more numeric series against a shared x axis (epochs, or C values).

    Args:
        series: ``{name: values}``; NaN/None values are skipped.
        x_label: axis label.
        title: figure title.
        x_values: x positions (default 1..n); strings are used as tick labels.

    Returns:
        PNG bytes.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot(1, 1, 1)
    for name, values in series.items():
        ys = [np.nan if v is None else float(v) for v in values]
        xs = list(range(1, len(ys) + 1))
        axes.plot(xs, ys, marker="o", label=name)
    if x_values is not None:
        axes.set_xticks(range(1, len(x_values) + 1), [str(v) for v in x_values])
    axes.set_xlabel(x_label)
    axes.set_title(title)
    if series:
        axes.legend()
    return _png(figure)
