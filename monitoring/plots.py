"""The dashboard's plots: matplotlib figures of ``monitor_summary`` rendered as inline SVG (Agg backend, no display).

Imported only by the admin dashboard view; matplotlib is loaded on the first call.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from monitoring.models import STAGES

WIDTH, HEIGHT = 7.0, 2.8
"""Figure size in inches."""


def _svg(figure: Any) -> str:
    """The figure as an SVG document without the XML prolog (safe to inline), then closed."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.find("<svg") :]


def _figure(title: str) -> tuple[Any, Any]:
    """A new figure and axes with a title."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(WIDTH, HEIGHT))
    axes.set_title(title, fontsize=10)
    return figure, axes


def _empty(axes: Any) -> None:
    """Say there is nothing to plot."""
    axes.text(0.5, 0.5, "no data in this window", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def dashboard_svgs(summary: dict[str, Any], *, recent_novelty: list[float], reference_novelty: list[float]) -> dict:
    """SVG strings by name: ``latency`` (p50/p90/p99 per stage), ``outcomes`` (failures by code, abstentions by
    reason), ``brands`` (top-1 brands per bucket, stacked), ``drift`` (novelty of recent uploads vs the catalog's)."""
    import numpy as np

    svgs: dict[str, str] = {}

    figure, axes = _figure("Latency per stage (ms): p50 / p90 / p99")
    stages = [s for s in STAGES if summary["latency_ms"][s]["n"]]
    if stages:
        x = np.arange(len(stages))
        for offset, key in zip((-0.27, 0.0, 0.27), ("p50", "p90", "p99"), strict=True):
            axes.bar(x + offset, [summary["latency_ms"][s][key] for s in stages], width=0.27, label=key)
        axes.set_xticks(x, stages, fontsize=8)
        axes.set_yscale("log")
        axes.legend(fontsize=8)
    else:
        _empty(axes)
    svgs["latency"] = _svg(figure)

    figure, axes = _figure("Failures by code and abstentions by reason")
    labels = [f"failed: {k}" for k in summary["failures"]["by_code"]] + [
        f"abstained: {k}" for k in summary["abstentions"]["by_reason"]
    ]
    counts = list(summary["failures"]["by_code"].values()) + list(summary["abstentions"]["by_reason"].values())
    if labels:
        axes.barh(
            labels,
            counts,
            color=["#c0392b"] * len(summary["failures"]["by_code"])
            + ["#e67e22"] * len(summary["abstentions"]["by_reason"]),
        )
        axes.tick_params(labelsize=8)
    else:
        _empty(axes)
    svgs["outcomes"] = _svg(figure)

    figure, axes = _figure(f"Top-1 brands per {summary['window']['bucket']}")
    series = summary["brands"]["series"]
    if series:
        starts = [datetime.fromisoformat(point["start"]) for point in series]
        bottom = np.zeros(len(series))
        width = 0.03 if summary["window"]["bucket"] == "hour" else 0.8  # days, matplotlib's date unit
        for brand in list(summary["brands"]["totals"])[:10]:
            values = np.asarray([point["counts"].get(brand, 0) for point in series], dtype=float)
            axes.bar(starts, values, bottom=bottom, label=brand, width=width)
            bottom += values
        axes.set_ylim(0, max(float(bottom.max()), 1.0) * 1.35)  # room for the legend above the bars
        axes.legend(fontsize=7, ncol=5, loc="upper left")
        figure.autofmt_xdate()
    else:
        _empty(axes)
    svgs["brands"] = _svg(figure)

    figure, axes = _figure("Input drift: novelty (1 - cosine to the nearest catalog photo)")
    if recent_novelty or reference_novelty:
        bins = np.linspace(0.0, max([*recent_novelty, *reference_novelty, 0.01]), 30)
        if reference_novelty:
            axes.hist(reference_novelty, bins=bins, density=True, alpha=0.5, label="catalog (reference)")
        if recent_novelty:
            axes.hist(recent_novelty, bins=bins, density=True, alpha=0.5, label="recent uploads")
        axes.legend(fontsize=8)
    else:
        _empty(axes)
    svgs["drift"] = _svg(figure)
    return svgs
