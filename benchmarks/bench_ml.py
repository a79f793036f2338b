"""Speed and accuracy of ``worker.ml`` on the real shared data (printed, never asserted).

Run from the repository root::

    .venv/bin/python benchmarks/bench_ml.py [--limit N] [--no-flip] [--wild-limit N]

Prints: TensorFlow import and backbone load time; embedding time per image at batch 1 and 32;
U^2-Net-p and GrabCut time per photo; then ``train_model`` on ``../shared/datasets/sneakers`` (group =
brand + product name where named, else the image hash; price where known; product id = a stable
integer per named product) with the EfficientNet-Lite0 backbone and embeddings cached under
``var/cache/embeddings``, printing the metrics JSON and wall time; finally the trained model's brand
top-1 on ``../shared/datasets/sneakers_wild`` through ``Pipeline`` with U^2-Net-p background removal
(and, for comparison, without), split into real-world and product-shot photos by
``extras/provenance.csv`` column ``eyeballed_style``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker.ml.images import load_rgb  # noqa: E402  (after the path set-up)

SHARED = ROOT.parent / "shared"


def stamp(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def per_image_ms(seconds: float, count: int) -> str:
    return f"{1000.0 * seconds / max(count, 1):.1f} ms/image"


def read_catalog(shared: Path, limit: int | None, seed: int):
    """TrainingSamples for the catalog manifest (optionally a seeded random subset of ``limit`` rows)."""
    from worker.ml.training import TrainingSample

    folder = shared / "datasets" / "sneakers"
    rows = list(csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")))
    if limit is not None and limit < len(rows):
        chosen = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
        rows = [rows[i] for i in sorted(chosen)]
    samples = []
    for row in rows:
        path = folder / row["image_path"]
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        name = row["product_name"].strip()
        key = f"{row['brand']}\x1f{name}"
        samples.append(
            TrainingSample(
                sha256=sha,
                brand=row["brand"],
                group=f"{row['brand']}/{name}" if name else sha,
                price_usd=float(row["price_usd"]) if row["price_usd"].strip() else None,
                product_id=int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) if name else None,
                load=lambda path=path: path.read_bytes(),
            )
        )
    return samples


def bench_speed(backbone, u2net, grabcut, wild_paths: list[Path]) -> None:
    """Embedding and background-removal speed."""
    rng = np.random.default_rng(0)
    side = backbone.input_size
    batch = rng.integers(0, 256, size=(32, side, side, 3), dtype=np.uint8)
    backbone.embed(batch[:1])  # trace
    backbone.embed(batch)
    started = time.perf_counter()
    for i in range(20):
        backbone.embed(batch[i % 32 : i % 32 + 1])
    stamp(f"embed batch 1 ({side} px, {backbone.dim}-d): {per_image_ms(time.perf_counter() - started, 20)}")
    started = time.perf_counter()
    for _ in range(3):
        backbone.embed(batch)
    stamp(f"embed batch 32: {per_image_ms(time.perf_counter() - started, 96)}")

    photos = [load_rgb(p.read_bytes()) for p in wild_paths]
    sizes = Counter(f"{p.shape[1]}x{p.shape[0]}" for p in photos)
    for remover in (u2net, grabcut):
        remover(photos[0])  # warm up
        started = time.perf_counter()
        for photo in photos:
            remover(photo)
        elapsed = time.perf_counter() - started
        stamp(f"{remover.name}: {per_image_ms(elapsed, len(photos))} on {len(photos)} photos {dict(sizes)}")


def evaluate_wild(artifact, backbone, removers, shared: Path, limit: int | None) -> dict:
    """Brand top-1 on the wild set through Pipeline, per remover and per eyeballed style."""
    from worker.ml.pipeline import Pipeline

    folder = shared / "datasets" / "sneakers_wild"
    rows = list(csv.DictReader((folder / "manifest.csv").open(encoding="utf-8")))
    style = {
        r["image_path"]: r["eyeballed_style"]
        for r in csv.DictReader((folder / "extras" / "provenance.csv").open(encoding="utf-8"))
    }
    if limit is not None:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    classes = set(artifact.brand_head.classes)
    report = {}
    for remover in removers:
        pipeline = Pipeline(artifact, backbone, remover)
        hits: dict[str, list[bool]] = defaultdict(list)
        hits3: dict[str, list[bool]] = defaultdict(list)
        methods: Counter[str] = Counter()
        timings: dict[str, list[float]] = defaultdict(list)
        started = time.perf_counter()
        for row in rows:
            if row["brand"] not in classes:
                continue
            result = pipeline.predict((folder / row["image_path"]).read_bytes())
            kind = style.get(row["image_path"], "unknown")
            right = result.brands[0].brand == row["brand"]
            right3 = row["brand"] in [b.brand for b in result.brands]
            for key in ("all", kind):
                hits[key].append(right)
                hits3[key].append(right3)
            methods[result.background] += 1
            for stage, ms in result.timings_ms.items():
                timings[stage].append(ms)
        name = remover.name if remover is not None else "none"
        report[name] = {
            "top1": {key: round(float(np.mean(v)), 4) for key, v in hits.items()},
            "top3": {key: round(float(np.mean(v)), 4) for key, v in hits3.items()},
            "n": {key: len(v) for key, v in hits.items()},
            "background": dict(methods),
            "median_ms": {stage: round(float(np.median(v)), 1) for stage, v in timings.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        stamp(f"wild with background={name}: {json.dumps(report[name])}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="train on a random subset of N catalog images")
    parser.add_argument("--wild-limit", type=int, default=None, help="evaluate on about N wild photos")
    parser.add_argument("--no-flip", action="store_true", help="no mirrored training images")
    parser.add_argument(
        "--train-background",
        choices=("none", "u2netp"),
        default="none",
        help="background removal on non-plain catalog photos before embedding them for training",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache" / "embeddings")
    parser.add_argument("--save", type=Path, default=None, help="also save the trained artifact here")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    wall = time.perf_counter()

    started = time.perf_counter()
    import tensorflow as tf

    stamp(f"tensorflow {tf.__version__} import: {time.perf_counter() - started:.2f} s; CPUs: {os.cpu_count()}")
    from worker.ml.backbone import Backbone
    from worker.ml.background import GrabCutRemover, U2NetpRemover
    from worker.ml.embeddings import EmbeddingCache
    from worker.ml.training import TrainingConfig, train_model

    weights = args.shared / "weights"
    started = time.perf_counter()
    backbone = Backbone(weights / "efficientnet_lite0_imagenet_notop.keras")
    stamp(
        f"backbone load: {time.perf_counter() - started:.2f} s (dim {backbone.dim}, fingerprint {backbone.fingerprint})"
    )
    started = time.perf_counter()
    u2net = U2NetpRemover(weights / "u2netp.onnx")
    stamp(f"U^2-Net-p session load: {time.perf_counter() - started:.2f} s")
    wild_dir = args.shared / "datasets" / "sneakers_wild"
    wild_rows = list(csv.DictReader((wild_dir / "manifest.csv").open(encoding="utf-8")))
    bench_speed(backbone, u2net, GrabCutRemover(), [wild_dir / r["image_path"] for r in wild_rows[::39]])

    started = time.perf_counter()
    samples = read_catalog(args.shared, args.limit, args.seed)
    stamp(f"catalog: {len(samples)} images read and hashed in {time.perf_counter() - started:.1f} s")
    cache = EmbeddingCache(args.cache_dir, backbone.fingerprint)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if done == total or time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            stamp(f"  embedded {done}/{total}")

    started = time.perf_counter()
    result = train_model(
        samples,
        TrainingConfig(seed=args.seed, flip_augment=not args.no_flip),
        backbone=backbone,
        cache=cache,
        remover=u2net if args.train_background == "u2netp" else None,
        progress=progress,
    )
    train_seconds = time.perf_counter() - started
    print(json.dumps(result.metrics, sort_keys=True), flush=True)
    stamp(
        f"train_model wall time: {train_seconds:.1f} s "
        f"(flip_augment={not args.no_flip}, train_background={args.train_background})"
    )
    if args.save is not None:
        result.artifact.save(args.save)

    evaluate_wild(result.artifact, backbone, [u2net, None], args.shared, args.wild_limit)
    stamp(f"total wall time: {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
