"""Helpers for tests and development only; production code never calls them.

``build_tiny_backbone`` writes a small, randomly initialised Keras model with the same interface as the
real EfficientNet-Lite0 backbone (uint8-normalised RGB in, 2-D embedding out), so that unit, service
and end-to-end tests exercise the real code paths in well under a second per call.
"""

from __future__ import annotations

from pathlib import Path

from worker.ml.backbone import import_keras


def build_tiny_backbone(path: Path, *, dim: int = 16, seed: int = 0, tap_names: bool = False) -> Path:
    """Build and save a tiny Keras backbone: input ``(None, None, None, 3)``, output ``(None, dim)``.

    Layers: Conv2D(8, 3x3, stride 2, ReLU) -> Conv2D(16, 3x3, stride 2, ReLU) ->
    GlobalAveragePooling2D -> Dense(dim). Weights come from seeded Glorot-uniform initialisers, so the
    same ``seed`` gives the same weights (the file's bytes, and so ``Backbone.fingerprint``, may still
    differ between saves because the archive records a save time).

    Args:
        path: where to write the model; should end in ``.keras``. Parent folders are created.
        dim: embedding width D.
        seed: initialiser seed.
        tap_names: name the two convolutions ``block7_add`` and ``block14_add``, as the
            EfficientNet-Lite0 layers ``Backbone`` taps (and fine-tuning cuts at), so the multi-level
            descriptor (16 + 8 + 16 = 40 wide for ``dim=16``) and its fine-tuning path are exercised.

    Returns:
        ``path``.

    Raises:
        ValueError: ``dim < 1`` or ``path`` does not end in ``.keras``.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"Keras 3 model files must end in .keras, got {path}")
    keras = import_keras()
    init = keras.initializers.GlorotUniform
    inputs = keras.Input(shape=(None, None, 3))
    names = ("block7_add", "block14_add") if tap_names else (None, None)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", kernel_initializer=init(seed), name=names[0])(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=init(seed + 1), name=names[1])(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(dim, kernel_initializer=init(seed + 2))(x)
    model = keras.Model(inputs, outputs, name="tiny_backbone")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path
