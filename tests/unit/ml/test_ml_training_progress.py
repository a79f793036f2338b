"""``train_model``'s stage progress callback on the fine-tuning path: every stage of ``STAGES`` in order, each
one's count reaching its total, with no Django (the registry writes these calls to a ``TrainingRun``)."""

from __future__ import annotations

from tests.unit.ml.test_ml_quality import _samples, _wild
from worker.ml.embeddings import EmbeddingCache
from worker.ml.training import TrainingConfig, TrainingData, train_model
from worker.ml.training.run import STAGES


def test_stage_progress_walks_every_stage_in_order_on_the_finetuning_path(tapped_backbone, tmp_path):
    calls: list[tuple[str, int, int]] = []
    wild, styles = _wild()
    samples = _samples()
    train_model(
        TrainingData(catalog=samples, wild=wild, wild_styles=styles),
        TrainingConfig(seed=0, finetune=True, workdir=tmp_path / "work", augment_copies=1, finetune_epochs=2),
        backbone=tapped_backbone,
        cache=EmbeddingCache(tmp_path / "cache", tapped_backbone.fingerprint),
        stage_progress=lambda stage, done, total: calls.append((stage, done, total)),
    )

    order = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert order == list(STAGES)  # each stage once, in the documented order, none left out
    last = {stage: (done, total) for stage, done, total in calls}
    assert all(done == total for done, total in last.values()), last  # every stage ends complete
    assert last["embedding"] == (len(samples), len(samples))
    assert last["preparing"] == (len(wild), len(wild))  # no ImageNet classifier: wild photos only
    assert last["augmenting"] == (len(samples), len(samples))
    assert last["fine-tuning"] == (2, 2)  # epochs
    for stage in STAGES:
        counts = [done for name, done, _ in calls if name == stage]
        assert counts == sorted(counts), stage  # never goes back
