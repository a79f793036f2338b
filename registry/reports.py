"""Metrics of a model version rounded for people: the summary rows admin, ``train`` and ``evaluate`` print.

``ModelVersion.metrics`` is the dict ``worker.ml.training.run.train_model`` stores (``TrainingResult.metrics``)
plus the ``evaluations`` that ``manage.py evaluate`` adds; absent keys are skipped or shown as "–".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COMPARE_ROWS = (
    ("variant", ("variant",)),
    ("brand test top-1", ("brand", "top1")),
    ("brand test top-3", ("brand", "top3")),
    ("brand test log loss", ("brand", "log_loss")),
    ("ECE before temperature", ("brand", "ece_before")),
    ("ECE after temperature", ("brand", "ece_after")),
    ("model test top-1", ("model", "top1")),
    ("model test top-5", ("model", "top5")),
    ("model: share not sure", ("model", "uncertain_share")),
    ("model top-1 when sure", ("model", "top1_sure")),
    ("price MAE (USD)", ("price", "mae")),
    ("baseline MAE (USD)", ("price", "baseline_mae")),
    ("real-world top-1 (held out)", ("wild", "real-world", "top1")),
    ("product-shot top-1 (wild)", ("wild", "product-shot", "top1")),
    ("training seconds", ("seconds", "total")),
)
"""Rows of the summary and comparison tables: label and key path into ``ModelVersion.metrics``."""

USD_KEYS = {"mae", "baseline_mae", "price_mae", "price_baseline_mae", "rmse"}
PLAIN_KEYS = {"log_loss", "val_log_loss", "val_log_loss_calibrated", "temperature", "C", "alpha", "score", "threshold"}


def metric_at(metrics: Any, *path: str) -> Any:
    """The value at ``path`` in nested dicts, or None when a key is absent."""
    value = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def metric_format(key: str, value: Any) -> str:
    """A metric rounded for people: shares (accuracy, recall, ECE, MAPE) as percent with one decimal, USD with
    cents, seconds with one decimal, log loss and other scores to 3 significant digits; "–" when absent."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) and key not in USD_KEYS:
        return f"{value:,}"
    if key in USD_KEYS or key.endswith("_usd"):
        return f"${value:,.2f}"
    if key in PLAIN_KEYS or "log_loss" in key:
        return f"{value:.3g}"
    if key in {"total", "embed", "fit", "seconds"} or key.endswith("_seconds"):
        return f"{value:,.1f} s"
    if -1.0 <= value <= 1.0:
        return f"{value * 100:.1f}%"
    return f"{value:,.4g}"


def summary_rows(
    metrics: dict[str, Any], rows: Sequence[tuple[str, tuple[str, ...]]] = COMPARE_ROWS
) -> list[tuple[str, str]]:
    """``[(label, formatted value)]`` of the ``rows`` present in ``metrics`` (``COMPARE_ROWS`` by default)."""
    return [
        (label, metric_format(path[-1], metric_at(metrics, *path)))
        for label, path in rows
        if metric_at(metrics, *path) is not None
    ]


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """Rows of strings as a plain text table: columns padded to their widest cell, the first left-aligned,
    the others right-aligned (figures), a rule under the header."""
    table = [list(header)] if header else []
    table += [list(row) for row in rows]
    if not table:
        return ""
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(max(map(len, table)))]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        return "  ".join(cells).rstrip()

    out = [line(row) for row in table]
    if header:
        out.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(out)
