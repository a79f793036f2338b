"""Model quality on the real shared data: head-only vs fine-tuned, calibration, abstention, price.

Run from the repository root (2 CPU cores, 320 px multi-level descriptor: about 30-40 minutes from
cold caches, most of it U^2-Net-p on the wild and negative photos, the trunk activations of the
augmented copies and the fine-tuning; caches under ``var/cache`` make a second run much faster)::

    .venv/bin/python benchmarks/bench_quality.py [--no-finetune] [--copies 2] [--epochs 4] [--budget 420]

Prints (never asserts): ``train_model`` wall time with ``finetune=True`` on ``../shared/datasets/
sneakers`` (seed 42), ``sneakers_wild`` (styles from ``extras/provenance.csv`` column
``eyeballed_style``; 30 % train / 30 % validation / 40 % held-out test, grouped and seeded inside
``train_model``) and ``negatives`` (50 % tune / 50 % held out), with the ImageNet classifier for the
``not_footwear`` rule and U^2-Net-p as the test-time remover; the metrics JSON (test split, ECE
before/after, validation figures of each variant, wild held-out figures per style, abstain figures,
price against the per-brand median baseline); then ``evaluate`` through the saved artifact's
``load_pipeline`` on the held-out wild photos and held-out negatives; and the per-image inference
time of each variant's backbone (batch 1) and of the whole pipeline.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_ml import read_catalog, stamp  # noqa: E402

SHARED = ROOT.parent / "shared"


def read_wild(shared: Path):
    """Wild TrainingSamples and their eyeballed styles."""
    from worker.ml.training import TrainingSample

    folder = shared / "datasets" / "sneakers_wild"
    styles = {
        r["image_path"]: r["eyeballed_style"]
        for r in csv.DictReader((folder / "extras" / "provenance.csv").open(encoding="utf-8"))
    }
    samples, kinds = [], []
    for row in csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")):
        path = folder / row["image_path"]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        samples.append(
            TrainingSample(
                sha256=sha,
                brand=row["brand"],
                group=sha,
                price_usd=None,
                product_id=None,
                load=lambda path=path: path.read_bytes(),
            )
        )
        kinds.append(styles.get(row["image_path"], "unknown"))
    return samples, kinds


def read_negatives(shared: Path):
    """Loaders, categories and SHA-256 of the non-footwear photos."""
    folder = shared / "datasets" / "negatives"
    rows = list(csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")))
    loads = [lambda path=folder / r["image_path"]: path.read_bytes() for r in rows]
    return loads, [r["category"] for r in rows]


def time_backbone(backbone, squares: np.ndarray) -> float:
    """Milliseconds per image of ``embed_raw`` at batch 1."""
    backbone.embed_raw(squares[:1])
    started = time.perf_counter()
    for i in range(len(squares)):
        backbone.embed_raw(squares[i : i + 1])
    return 1000.0 * (time.perf_counter() - started) / len(squares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=420.0, help="fine-tuning time budget, seconds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "quality")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from worker.ml.backbone import Backbone
    from worker.ml.background import U2NetpRemover
    from worker.ml.embeddings import EmbeddingCache
    from worker.ml.evaluation import EvalItem, evaluate
    from worker.ml.pipeline import load_pipeline
    from worker.ml.training import TrainingConfig, TrainingData, train_model

    weights = args.shared / "weights"
    backbone = Backbone(weights / "efficientnet_lite0_imagenet_notop.keras")
    u2net = U2NetpRemover(weights / "u2netp.onnx")
    samples = read_catalog(args.shared, None, args.seed)
    wild, styles = read_wild(args.shared)
    negatives, categories = read_negatives(args.shared)
    stamp(f"{len(samples)} catalog, {len(wild)} wild, {len(negatives)} negative photos")
    cache = EmbeddingCache(ROOT / "var" / "cache" / "embeddings", backbone.fingerprint)
    started = time.perf_counter()
    result = train_model(
        TrainingData(
            catalog=samples, wild=wild, wild_styles=styles, negatives=negatives, negative_categories=categories
        ),
        TrainingConfig(
            seed=args.seed,
            finetune=not args.no_finetune,
            imagenet_classifier_path=weights / "efficientnet_lite0_imagenet.keras",
            workdir=ROOT / "var" / "cache" / "quality",
            augment_copies=args.copies,
            finetune_epochs=args.epochs,
            finetune_budget_s=args.budget,
        ),
        backbone=backbone,
        cache=cache,
        test_remover=u2net,
        log=stamp,
    )
    stamp(f"train_model wall time: {time.perf_counter() - started:.1f} s")
    metrics = dict(result.metrics)
    for key in ("reliability_before", "reliability_after"):
        metrics["brand"].pop(key, None)
    print(json.dumps(metrics, sort_keys=True, default=str), flush=True)
    artifact_dir = args.out / "artifact"
    result.artifact.save(artifact_dir)
    for name, png in result.report.items():
        (args.out / name).write_bytes(png)
    (args.out / "split.json").write_text(json.dumps(result.split))

    pipeline = load_pipeline(artifact_dir, backbone=backbone, remover=u2net)
    wild_test = set(result.split["wild"]["test"])
    items = [
        EvalItem(load=s.load, brand=s.brand, style=style, name=s.sha256)
        for s, style in zip(wild, styles, strict=True)
        if s.sha256 in wild_test
    ]
    holdout = set(result.split["negatives"]["holdout"])
    for load, category in zip(negatives, categories, strict=True):
        if hashlib.sha256(load()).hexdigest() in holdout:
            items.append(EvalItem(load=load, brand=None, category=category, style="negative"))
    started = time.perf_counter()
    report = evaluate(pipeline, items)
    stamp(
        f"evaluate on {len(items)} held-out photos ({pipeline.artifact.metadata['variant']}): "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(json.dumps(report, sort_keys=True, default=str), flush=True)

    side = backbone.input_size
    squares = np.random.default_rng(0).integers(0, 256, size=(20, side, side, 3), dtype=np.uint8)
    stamp(f"head-only backbone: {time_backbone(backbone, squares):.1f} ms/image (batch 1)")
    if pipeline.backbone is not backbone:
        stamp(f"fine-tuned dual backbone: {time_backbone(pipeline.backbone, squares):.1f} ms/image (batch 1)")


if __name__ == "__main__":
    main()
