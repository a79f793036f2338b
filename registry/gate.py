"""Activation gate of a retrained candidate: it replaces the active version only when it does better on the
same held-out photos.

Both versions run through the worker's prediction pipeline (``worker.ml.evaluation.evaluate``) on the
photos the *candidate* held out when it was trained (its ``split.json`` test side: catalog photos, and the
wild photos of ``SNEAKERS_WILD_DIR`` when the folder exists), keeping only photos of brands both versions
know, so each is scored on exactly the same photos. The rule (``gate_passes``): brand top-1 not lower and
log loss lower. Brand top-1 is the first guess whatever the abstain rules say (``top1_raw``, as training's
test top-1), so a change of refusal thresholds alone neither passes nor fails a candidate; log loss is
``worker.ml.metrics.log_loss`` over the calibrated probabilities. The active version may have trained on
some of these photos (its own split was drawn from an older catalog), which favours it: a candidate has to
beat it anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from catalog.selectors import training_rows
from registry.evaluation import keep_side, read_items, read_split
from registry.models import ModelVersion

RULE = "brand top-1 not lower and log loss lower, on the candidate's held-out photos"


def gate_items(candidate: ModelVersion) -> list[Any]:
    """``EvalItem``s of the candidate's held-out photos: catalog rows on its test side (loaded from storage)
    and wild photos on its wild test side.

    Raises:
        FileNotFoundError: the candidate has no ``split.json``.
    """
    from worker.ml.evaluation import EvalItem

    split = read_split(candidate)
    test = set(split.get("test", []))

    def loader(name: str) -> Callable[[], bytes]:
        def load() -> bytes:
            with default_storage.open(name, "rb") as handle:
                return handle.read()

        return load

    items = [
        EvalItem(
            load=loader(row.storage_name),
            brand=row.brand,
            price_usd=row.price_usd,
            style=row.style or None,
            name=row.storage_name,
            model=row.model,
            source="catalog",
        )
        for row in training_rows()
        if row.sha256 in test
    ]
    wild_dir = Path(settings.SNEAKERS_WILD_DIR)
    wild_test = set(split.get("wild", {}).get("test", []))
    if wild_test and (wild_dir / "manifest.csv").is_file():
        items += [item for item in keep_side(read_items(wild_dir), wild_test) if item.brand]
    return items


def gate_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the gate compares and shows, from an ``evaluate`` report: ``{"top1", "top1_shopper",
    "log_loss", "n"}``: ``top1`` is the report's ``top1_raw`` (first guess, abstain rules ignored; compared),
    ``top1_shopper`` its ``top1`` (abstained photos count as wrong; shown only)."""
    return {
        "top1": report.get("top1_raw"),
        "top1_shopper": report.get("top1"),
        "log_loss": report.get("log_loss"),
        "n": report.get("n_sneakers", report.get("n")),
    }


def gate_passes(candidate: dict[str, Any], active: dict[str, Any]) -> tuple[bool, str]:
    """``(passes, reason)``: brand top-1 not lower and log loss lower (``RULE``); missing figures fail."""
    c_top1, a_top1 = candidate.get("top1"), active.get("top1")
    c_loss, a_loss = candidate.get("log_loss"), active.get("log_loss")
    if None in (c_top1, a_top1, c_loss, a_loss):
        return False, "a figure is missing (no scored photo), so the candidate cannot be shown to be better"
    if c_top1 < a_top1:
        return False, f"brand top-1 is lower ({c_top1:.1%} vs {a_top1:.1%})"
    if c_loss >= a_loss:
        return False, f"log loss is not lower ({c_loss:.3f} vs {a_loss:.3f})"
    return True, f"brand top-1 {c_top1:.1%} vs {a_top1:.1%}, log loss {c_loss:.3f} vs {a_loss:.3f}"


def gate_decide(
    *,
    candidate: ModelVersion,
    active: ModelVersion,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score both versions on the candidate's held-out photos and decide (module docstring).

    Returns:
        ``{"decision": "activate" | "keep", "reason", "rule", "against", "n", "left_out", "candidate":
        gate_figures, "active": gate_figures, "decided_at"}`` (``left_out``: held-out photos of a brand one of
        the two does not know). The caller activates and stores it (``ModelVersion.gate``).

    Raises:
        FileNotFoundError: the candidate has no ``split.json``.
        ModelError: a version does not load.
    """
    from registry import runtime
    from worker.ml.evaluation import evaluate

    known = set(candidate.classes) & set(active.classes)
    held_out = gate_items(candidate)
    items = [item for item in held_out if item.brand in known]
    outcome: dict[str, Any] = {
        "rule": RULE,
        "against": active.name,
        "n": len(items),
        "left_out": len(held_out) - len(items),
        "decided_at": timezone.now().isoformat(timespec="seconds"),
    }
    if not items:
        return {
            **outcome,
            "decision": "keep",
            "reason": "no held-out photo of a brand both versions know",
            "candidate": {},
            "active": {},
        }
    total = 2 * len(items)
    figures = {}
    for offset, (key, version) in enumerate((("candidate", candidate), ("active", active))):
        pipeline = runtime.pipeline_get(version)
        start = offset * len(items)
        step = (lambda done, _, start=start: progress(start + done, total)) if progress is not None else None
        figures[key] = gate_figures(evaluate(pipeline, items, progress=step))
    passes, reason = gate_passes(figures["candidate"], figures["active"])
    return {**outcome, "decision": "activate" if passes else "keep", "reason": reason, **figures}
