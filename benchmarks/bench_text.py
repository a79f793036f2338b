"""Listing text against the photo alone: image-only, text-only and fused figures on held-out catalog photos with titles.

Run from the repository root (embeddings cached under ``var/cache/embeddings``, shared with training; about 10
minutes from a cold cache on 2 cores, 2-4 minutes warm, most of it the image heads' logistic regressions)::

    .venv/bin/python benchmarks/bench_text.py [--seed 42] [--artifact DIR --split split.json]

Data: every photo of ``../shared/datasets/sneakers`` (titles: ``product_name`` of the Foot Locker ``fl_`` listings and
the restocks ``rst_`` listings; the Zappos and Kaggle photos have none and only train the image heads) and of
``../shared/datasets/sneaker_models`` (its ``product_name`` is the named model, so its "title" *is* the model label).
Each photo becomes a ``TrainingSample`` as ``registry.training`` makes them from the catalog (group: brand + title for
listings, the image hash for model photos; styles as ``bench_quality --lobo`` reads them), split by
``worker.ml.training.plan_splits`` with the default ``TrainingConfig`` (product-grouped, near-duplicates merged,
15 % validation, 15 % test per brand and style).

Image heads: without ``--artifact``, the brand and model heads of ``train_model``'s head-only variant are fitted the
same way (``fit_classifier`` with C and temperature on validation, ``fit_model_head``; no mirrored copies, no wild
photos). With ``--artifact`` and its ``split.json``, that trained version's heads and test side are used instead.
Text: ``worker.ml.training.listing.fit_listing_text`` (training titles; C and fusion weights on validation).

Printed (never asserted): the chosen weights and the table of brand top-1, brand log loss and named-model top-1 for
image only, text only and fused, on the test photos with titles, per source, for each of ``VARIANTS``: the title as
it is, with its brand words removed (``strip_brand_words``: titles name their brand, which makes the text look better
than a listing that names only the model would), a generic phrase instead (the fallback to the image), and another
brand's title (a wrong listing). Named-model photos' titles are their model's name, which the text model saw in
training: their model figures say only that an exact model name is read right.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"


def stamp(message: str) -> None:
    """Print a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def read_samples(shared: Path) -> tuple[list, list[str]]:
    """``TrainingSample`` of every photo of the two catalog sets, and each photo's source (``listing`` for titled
    ``sneakers`` rows, ``model`` for ``sneaker_models``, ``untitled``)."""
    from catalog.datasets import manifest_rows, provenance_styles
    from worker.ml.training import TrainingSample

    samples, sources = [], []
    for name in ("sneakers", "sneaker_models"):
        folder = shared / "datasets" / name
        styles = provenance_styles(folder)
        for row, path in manifest_rows(folder):
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            title = row["product_name"].strip() or None
            is_model = name == "sneaker_models"
            style = styles.get(row["image_path"], "")
            if name == "sneakers":
                style = "" if path.name.startswith("kag_") else "product-shot"
            samples.append(
                TrainingSample(
                    sha256=sha,
                    brand=row["brand"],
                    group=f"{row['brand']}/{title}" if title and not is_model else sha,
                    price_usd=None,
                    product_id=None,
                    load=lambda path=path: path.read_bytes(),
                    model=title if is_model else None,
                    style=style if style in ("real-world", "product-shot") else "",
                    title=title,
                )
            )
            sources.append("model" if is_model else "listing" if title else "untitled")
    return samples, sources


VARIANTS = ("as is", "brand words removed", "generic phrase only", "another brand's title")
"""How the test photos' titles are given: as in the catalog; without brand words; replaced by a made-up phrase that
names no shoe (``worker.ml.text.GENERIC_TEXTS``: the image's answer should stand); replaced by the title of a test
photo of another brand (a wrong listing: how far the text overrides the photo)."""


def variant_texts(variant: str, rows: np.ndarray, titles: list[str], samples: list, known: list[str], pool: list):
    """The texts of ``rows`` under a ``VARIANTS`` entry (``pool``: ``(title, brand)`` of the titled test photos)."""
    from worker.ml.text import GENERIC_TEXTS, strip_brand_words

    if variant == "as is":
        return [titles[i] for i in rows]
    if variant == "brand words removed":
        return [strip_brand_words(titles[i], known) for i in rows]
    if variant == "generic phrase only":
        return [GENERIC_TEXTS[k % len(GENERIC_TEXTS)] for k in range(rows.size)]
    texts = []
    for k, i in enumerate(rows):
        others = [title for title, brand in pool if brand != samples[i].brand]
        texts.append(others[(k * 7919) % len(others)])
    return texts


def fit_image_heads(vectors: np.ndarray, samples: list, split, config):
    """The head-only variant's brand and model heads (as ``train_model`` fits them, without mirrors or wild)."""
    from worker.ml.training.fitting import fit_classifier, fit_model_head

    labels = np.asarray([s.brand for s in samples])
    models = np.asarray([s.model for s in samples], dtype=object)
    train, val = split.train, split.val
    brand = fit_classifier(vectors[train], labels[train], vectors[val], labels[val], config=config)
    stamp(f"brand head: C={brand.C}, T={brand.head.temperature:.3f}")
    counts = Counter(m for m in models[train] if m is not None)
    model = fit_model_head(
        vectors[train],
        models[train],
        labels[train],
        vectors[val],
        models[val],
        config=config,
        photo_counts=counts,
    )
    stamp(f"model head: {len(model.head.classes) if model.head else 0} models")
    return brand.head, model.head


def cached_heads(path: Path, fit):
    """The image heads saved at ``path`` by an earlier run with the same backbone, seed and photos, else ``fit()``'s
    (then saved there): fitting them is most of a warm run."""
    from worker.ml.heads import BrandHead, ModelHead

    if path.exists():
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        brand = BrandHead.from_arrays({k[6:]: v for k, v in arrays.items() if k.startswith("brand.")})
        model_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        stamp(f"image heads read from {path}")
        return brand, ModelHead.from_arrays(model_arrays) if model_arrays else None
    brand, model = fit()
    arrays = {f"brand.{k}": v for k, v in brand.to_arrays().items()}
    if model is not None:
        arrays.update({f"model.{k}": v for k, v in model.to_arrays().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return brand, model


def main() -> None:
    """Parse arguments, embed, split, fit, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache" / "embeddings")
    parser.add_argument("--artifact", type=Path, help="a trained artifact folder: use its heads")
    parser.add_argument("--split", type=Path, help="that version's split.json: use its test side")
    args = parser.parse_args()

    from worker.ml.backbone import Backbone
    from worker.ml.embeddings import EmbeddingCache, embed_images
    from worker.ml.text import text_figures
    from worker.ml.training import Split, TrainingConfig, TrainingData, plan_splits
    from worker.ml.training.listing import fit_listing_text

    started = time.perf_counter()
    samples, sources = read_samples(args.shared)
    stamp(f"{len(samples)} photos, {Counter(sources)}")
    config = TrainingConfig(seed=args.seed)
    if args.artifact is not None:
        from worker.ml.artifact import ModelArtifact
        from worker.ml.preprocessing import BackboneSpec

        artifact = ModelArtifact.load(args.artifact)
        spec = BackboneSpec.from_metadata(artifact.metadata)
        backbone = Backbone.from_spec(args.shared / "weights" / "efficientnet_lite0_imagenet_notop.keras", spec)
        if artifact.backbone_keras is not None:
            backbone = Backbone.from_spec(args.artifact / "backbone.keras", spec)
    else:
        backbone = Backbone(args.shared / "weights" / "efficientnet_lite0_imagenet_notop.keras")
    cache = EmbeddingCache(args.cache_dir, backbone.fingerprint)
    vectors = embed_images([(s.sha256, s.load) for s in samples], backbone=backbone, cache=cache)
    stamp(f"embedded ({backbone.fingerprint}) at {time.perf_counter() - started:.0f} s")

    if args.artifact is not None:
        record = json.loads(args.split.read_text()) if args.split else {}
        position = {s.sha256: i for i, s in enumerate(samples)}
        sides = {
            side: np.asarray([position[h] for h in record.get(side, []) if h in position], dtype=np.int64)
            for side in ("train", "val", "test")
        }
        split = Split(train=sides["train"], val=sides["val"], test=sides["test"])
        brand_head, model_head = artifact.brand_head, artifact.model_head
    else:
        split = plan_splits(TrainingData(catalog=samples), config).catalog
        stamp(f"split: {split.train.size} train, {split.val.size} validation, {split.test.size} test")
        saved = args.cache_dir.parent / f"bench_text_heads_{backbone.fingerprint}_{args.seed}_{len(samples)}.npz"
        brand_head, model_head = cached_heads(saved, lambda: fit_image_heads(vectors, samples, split, config))

    listing = fit_listing_text(samples, split, vectors, brand_head, model_head, seed=args.seed)
    if listing.model is None:
        print(listing.report)
        return
    report = {k: v for k, v in listing.report.items() if not k.startswith("test")}
    stamp(f"text model: {json.dumps(report)}")

    source = np.asarray(sources)
    titles = [s.title or "" for s in samples]
    known = sorted({s.brand for s in samples} | set(brand_head.classes))
    model_classes = model_head.classes if model_head is not None else ()
    print()
    print(
        "| test photos with titles | title | n | text used | brand top-1 image / text / fused "
        "| brand log loss image / text / fused | named models n | model top-1 image / text / fused |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    figures_all = {}
    for name, chosen in (
        ("all", source[split.test] != "untitled"),
        ("shop listings (sneakers fl_, rst_)", source[split.test] == "listing"),
        ("named-model photos (sneaker_models)", source[split.test] == "model"),
    ):
        rows = split.test[chosen]
        if not rows.size:
            continue
        test_titles = [(titles[i], samples[i].brand) for i in split.test if titles[i]]
        for variant in VARIANTS:
            texts = variant_texts(variant, rows, titles, samples, known, test_titles)
            figures = text_figures(
                listing.model,
                texts,
                brand_classes=brand_head.classes,
                brand_proba=brand_head.predict_proba(vectors[rows]),
                brands=[samples[i].brand for i in rows],
                model_classes=model_classes,
                model_proba=model_head.predict_proba(vectors[rows]) if model_head is not None else None,
                models=[samples[i].model for i in rows],
            )
            figures_all[f"{name} / {variant}"] = figures

            def cell(key: str, fig: dict = figures) -> str:
                values = [fig[part][key] for part in ("image", "text", "fused")]
                return " / ".join("–" if v is None else f"{v:.3f}" for v in values)

            print(
                f"| {name} | {variant} | {figures['rows']} | {figures['text_used']:.3f} | {cell('brand_top1')} "
                f"| {cell('brand_log_loss')} "
                f"| {figures['model_rows']} | {cell('model_top1')} |"
            )
    print()
    print(json.dumps({"text": report, "figures": figures_all}, sort_keys=True))
    stamp(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
