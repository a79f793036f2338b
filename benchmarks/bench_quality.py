"""Model quality on the real shared data: head-only vs fine-tuned, calibration, abstention, price.

Run from the repository root (2 CPU cores, 320 px multi-level descriptor: about 30-40 minutes from
cold caches, most of it U^2-Net-p on the wild and negative photos, the trunk activations of the
augmented copies and the fine-tuning; caches under ``var/cache`` make a second run much faster)::

    .venv/bin/python benchmarks/bench_quality.py [--no-finetune] [--copies 2] [--epochs 4] [--budget 420]
    .venv/bin/python benchmarks/bench_quality.py --lobo [--brands puma vans] [--methods energy max_logit]

``--lobo`` prints the leave-one-brand-out table of the ``unknown_brand`` rules of ``worker.ml.openset`` instead
(no training run, no artifact): the photos of ``sneakers``, ``sneaker_models`` and ``sneakers_wild`` are embedded
(cached), grouped (product titles, near-duplicates merged) and split 60/20/20 stratified by brand x real-world;
for each brand X a brand head (logistic regression, C=10, balanced; temperature on validation) is fitted on the
training side of the other brands, each rule's threshold refuses 5 % of their validation photos (real-world ones
included; ``+style`` rows get per-style thresholds), and the table gives the share of ALL of X's photos refused, the
share of the known brands' test photos refused (all / real-world) and the AUROC known test vs X. About 10 minutes on
2 free cores with warm caches (one head fit per brand); the ``stacked`` rule adds 8 head fits per brand.

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


LOBO_METHODS = ("msp", "max_logit", "energy", "prototype", "knn", "energy+style", "max_logit+style")
"""Rules compared by ``--lobo`` (``worker.ml.openset`` methods; ``+style``: with per-style thresholds)."""


def read_lobo_photos(shared: Path):
    """``(path, brand, group, style)`` rows of the three sneaker sets.

    Groups: ``brand/product title`` for the shop listings of ``sneakers`` that have one, else the file's SHA-256
    (merged with near-duplicates by the caller). Styles: ``eyeballed_style`` of ``extras/provenance.csv``
    (``sneakers_wild``, ``sneaker_models``); in ``sneakers`` every source but the mixed Kaggle set (``kag_``) is
    product shots.
    """
    rows = []
    for name in ("sneakers", "sneaker_models", "sneakers_wild"):
        folder = shared / "datasets" / name
        provenance = folder / "extras" / "provenance.csv"
        styles = {}
        if provenance.exists():
            styles = {
                r["image_path"]: r.get("eyeballed_style", "") for r in csv.DictReader(provenance.open(encoding="utf-8"))
            }
        for row in csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")):
            path = folder / row["image_path"]
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            title = row["product_name"].strip()
            group = f"{row['brand']}/{title}" if name == "sneakers" and title else sha
            style = styles.get(row["image_path"], "")
            if name == "sneakers":
                style = "" if path.name.startswith("kag_") else "product-shot"
            rows.append((path, sha, row["brand"], group, style if style in ("real-world", "product-shot") else ""))
    return rows


def lobo(args) -> None:
    """Print the leave-one-brand-out table (module docstring, ``--lobo``)."""
    from sklearn.metrics import roc_auc_score

    from worker.ml.backbone import Backbone
    from worker.ml.dedup import image_hashes, merge_near_duplicates
    from worker.ml.embeddings import EmbeddingCache, embed_images
    from worker.ml.heads import fit_brand_head, fit_temperature
    from worker.ml.openset import fit_open_set
    from worker.ml.training import grouped_split

    rows = read_lobo_photos(args.shared)
    backbone = Backbone(args.shared / "weights" / "efficientnet_lite0_imagenet_notop.keras")
    cache = EmbeddingCache(args.cache_dir, backbone.fingerprint)
    started = time.perf_counter()
    x = embed_images(
        [(sha, lambda path=path: path.read_bytes()) for path, sha, *_ in rows], backbone=backbone, cache=cache
    )
    brand = np.asarray([r[2] for r in rows])
    style = np.asarray([r[4] for r in rows])
    hashes = [image_hashes(r[0].read_bytes()) for r in rows]
    groups = merge_near_duplicates([r[3] for r in rows], [[h[0] for h in hashes], [h[1] for h in hashes]])
    stamp(f"{len(rows)} photos embedded and grouped in {time.perf_counter() - started:.1f} s")
    strata = [f"{b}|{s == 'real-world'}" for b, s in zip(brand, style, strict=True)]
    split = grouped_split(strata, groups, seed=args.seed, val_fraction=0.2, test_fraction=0.2)
    side = np.zeros(len(rows), dtype=np.int64)  # 0 train, 1 val, 2 test
    side[split.val], side[split.test] = 1, 2
    real = style == "real-world"
    table: dict[str, dict[str, dict[str, float]]] = {}
    for left_out in args.brands or sorted(set(brand.tolist())):
        began = time.perf_counter()
        known = brand != left_out
        train, val, test = known & (side == 0), known & (side == 1), known & (side == 2)
        head = fit_brand_head(x[train], brand[train].tolist(), seed=args.seed, C=10.0)
        head = head.with_temperature(fit_temperature(head.logits(x[val]), brand[val].tolist(), head.classes))
        table[left_out] = {}
        for name in args.methods:
            method, _, extra = name.partition("+")
            styles = {"train_styles": style[train].tolist(), "val_styles": style[val].tolist()} if extra else {}
            rule = fit_open_set(
                x[train], brand[train], x[val], brand[val], head, method=method, seed=args.seed, **styles
            )
            known_scores = rule.score(x[test], head.logits(x[test]))
            unknown_scores = rule.score(x[~known], head.logits(x[~known]))
            truth = np.r_[np.ones(known_scores.size), np.zeros(unknown_scores.size)]
            table[left_out][name] = {
                "unknown_refused": float(np.mean(unknown_scores < rule.threshold)),
                "known_refused": float(np.mean(known_scores < rule.threshold)),
                "known_real_world_refused": float(np.mean(known_scores[real[test]] < rule.threshold)),
                "auroc": float(roc_auc_score(truth, np.r_[known_scores, unknown_scores])),
            }
        stamp(
            f"{left_out} left out: {int((~known).sum())} photos, known test {int(test.sum())} "
            f"({int((test & real).sum())} real-world), {time.perf_counter() - began:.1f} s"
        )
    brands = list(table)
    print("| rule | " + " | ".join(brands) + " | mean X refused | mean known refused all / real-world | mean AUROC |")
    print("| --- " * (len(brands) + 4) + "|")
    for name in args.methods:
        cells = [table[b][name] for b in brands]
        mean = {key: float(np.mean([c[key] for c in cells])) for key in cells[0]}
        print(
            f"| {name} | "
            + " | ".join(f"{c['unknown_refused']:.2f}" for c in cells)
            + f" | {mean['unknown_refused']:.2f} | {mean['known_refused']:.3f} / {mean['known_real_world_refused']:.3f}"
            + f" | {mean['auroc']:.3f} |"
        )
    print(json.dumps(table, sort_keys=True), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=420.0, help="fine-tuning time budget, seconds")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "quality")
    parser.add_argument("--lobo", action="store_true", help="leave-one-brand-out table of the unknown_brand rules")
    parser.add_argument("--brands", nargs="*", help="--lobo: brands to leave out (default: all)")
    parser.add_argument("--methods", nargs="*", default=list(LOBO_METHODS), help="--lobo: rules to compare")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache" / "embeddings")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.lobo:
        lobo(args)
        return
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
    cache = EmbeddingCache(args.cache_dir, backbone.fingerprint)
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
