"""Fixtures for ``worker.ml`` unit tests: a tiny Keras backbone built by the test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_backbone_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Keras backbone file (16-d embeddings), built once per test session."""
    from worker.ml.testing import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("weights") / "tiny.keras", dim=16, seed=0)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbone_path: Path):
    """The tiny backbone loaded as a ``worker.ml.backbone.Backbone`` (batch size 8)."""
    from worker.ml.backbone import Backbone

    return Backbone(tiny_backbone_path, batch_size=8)


@pytest.fixture(scope="session")
def tapped_backbone_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny backbone whose convolutions carry the names ``Backbone`` taps (``block7_add``, ``block14_add``)."""
    from worker.ml.testing import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("weights") / "tapped.keras", dim=16, seed=0, tap_names=True)


@pytest.fixture(scope="session")
def tapped_backbone(tapped_backbone_path: Path):
    """The tapped tiny backbone loaded with the default taps (a 16 + 8 + 16 = 40-wide descriptor)."""
    from worker.ml.backbone import Backbone

    return Backbone(tapped_backbone_path, batch_size=8)
