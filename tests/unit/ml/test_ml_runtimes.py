"""``worker.ml.runtimes``: which library runs a network, and OpenVINO giving the answers TensorFlow and onnxruntime
give (tiny Keras backbones built by the test session; U^2-Net-p with the shared weights)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.ml.ml_helpers import U2NETP_PATH
from worker.ml import runtimes
from worker.ml.backbone import Backbone
from worker.ml.errors import ModelError
from worker.ml.runtimes import runtime_resolve

pytest.importorskip("openvino", reason="the openvino package (requirements.txt) is not installed")


def random_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def test_runtime_resolve(monkeypatch):
    assert runtime_resolve("auto", gpu=False) == "openvino"
    assert runtime_resolve("auto", gpu=True) == "native"  # this module drives OpenVINO's CPU plugin only
    assert runtime_resolve("native", gpu=False) == "native"
    assert runtime_resolve("openvino", gpu=True) == "openvino"
    with pytest.raises(ValueError, match="unknown inference runtime"):
        runtime_resolve("tensorrt", gpu=False)
    monkeypatch.setattr(runtimes, "openvino_installed", lambda: False)
    assert runtime_resolve("auto", gpu=False) == "native"
    with pytest.raises(ModelError, match="pip install openvino"):
        runtime_resolve("openvino", gpu=False)


def test_backbone_on_openvino_gives_tensorflows_embeddings(tiny_backbone_path, tmp_path):
    """Same outputs (main and aux) at the backbone's input size, for one photo and for batches; the frozen graph
    is written once and read again by the next backbone; other sizes still work (TensorFlow's resize path)."""
    size = 64
    native = Backbone(tiny_backbone_path, batch_size=4, input_size=size)
    images = random_images(6, size)
    raw, aux = native.embed_raw(images)

    served = Backbone(tiny_backbone_path, batch_size=4, input_size=size)
    assert served.serve_with("openvino", cache_dir=tmp_path / "ov", threads=1) == "openvino"
    assert served.runtime == "openvino" and served._openvino is not None
    frozen = list((tmp_path / "ov").glob("backbone-*.pb"))
    assert [path.name for path in frozen] == [f"backbone-{served.fingerprint}.pb"]
    ov_raw, ov_aux = served.embed_raw(images)  # two batches of 4 and 2
    np.testing.assert_allclose(ov_raw, raw, atol=1e-5)
    np.testing.assert_allclose(ov_aux, aux, atol=1e-5)
    np.testing.assert_allclose(served.embed_raw(images[2:3])[0], raw[2:3], atol=1e-5)

    stamp = frozen[0].stat().st_mtime_ns
    again = Backbone(tiny_backbone_path, batch_size=4, input_size=size)
    again.serve_with("auto", cache_dir=tmp_path / "ov", threads=1)
    assert again.runtime == "openvino" and frozen[0].stat().st_mtime_ns == stamp
    other = random_images(2, 48, seed=3)
    np.testing.assert_allclose(again.embed(other), native.embed(other), atol=1e-5)

    assert again.serve_with("native", cache_dir=tmp_path / "ov") == "tensorflow" and again._openvino is None


def test_tapped_backbone_on_openvino(tapped_backbone_path, tmp_path):
    """The multi-level descriptor (taps) comes through OpenVINO whole, in the same order of outputs."""
    native = Backbone(tapped_backbone_path, input_size=64)
    served = Backbone(tapped_backbone_path, input_size=64)
    served.serve_with("openvino", cache_dir=tmp_path, threads=1)
    images = random_images(3, 64, seed=1)
    for mine, theirs in zip(served.embed_raw(images), native.embed_raw(images), strict=True):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_backbone_cache_that_cannot_be_written_is_a_model_error(tiny_backbone_path, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    backbone = Backbone(tiny_backbone_path, input_size=64)
    with pytest.raises(ModelError, match="cannot save the backbone"):
        backbone.serve_with("openvino", cache_dir=blocker / "ov")
    assert backbone.runtime == "tensorflow"  # still embeds, on TensorFlow
    assert backbone.embed(random_images(1, 64)).shape == (1, 16)
    assert backbone.serve_with("auto", cache_dir=blocker / "ov") == "tensorflow"  # auto stays, with a warning


@pytest.mark.parametrize("has_bf16", [True, False])
def test_backbone_precision_on_openvino(tiny_backbone_path, tmp_path, monkeypatch, has_bf16):
    """``auto`` serves the backbone in bfloat16 where the CPU has it; its embeddings stay close to TensorFlow's, and
    its cache key keeps them apart from float32 embeddings. TensorFlow always computes float32."""
    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: has_bf16)
    native = Backbone(tiny_backbone_path, input_size=64)
    assert (native.precision, native.cache_key) == ("f32", native.fingerprint)
    served = Backbone(tiny_backbone_path, input_size=64)
    assert served.serve_with("openvino", cache_dir=tmp_path, threads=1, precision="auto") == "openvino"
    expected = "bf16" if has_bf16 else "f32"
    assert served.precision == expected and served._openvino.precision == expected
    assert served.cache_key == (f"{served.fingerprint}-bf16" if has_bf16 else served.fingerprint)
    images = random_images(4, 64, seed=5)
    mine, theirs = served.embed(images), native.embed(images)
    cosines = (mine * theirs).sum(axis=1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosines.min() > 0.98
    assert served.serve_with("native", cache_dir=tmp_path, precision="auto") == "tensorflow"
    assert (served.precision, served.cache_key) == ("f32", served.fingerprint)
    with pytest.raises(ValueError, match="unknown precision"):
        served.serve_with("openvino", cache_dir=tmp_path, precision="fp8")


def test_openvino_network_compiles_once_per_thread_count(tiny_backbone_path, tmp_path):
    backbone = Backbone(tiny_backbone_path, input_size=64)
    counts = iter([1, 2, 1, 2])
    backbone.serve_with("openvino", cache_dir=tmp_path, threads=1, threads_now=lambda: next(counts))
    images = random_images(1, 64)
    outputs = [backbone.embed_raw(images)[0] for _ in range(4)]
    assert sorted(backbone._openvino._compiled) == [1, 2]
    for output in outputs[1:]:
        np.testing.assert_allclose(output, outputs[0], atol=1e-5)


def test_precision_resolve_follows_the_cpu_and_the_runtime(monkeypatch):
    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: True)
    assert runtimes.precision_resolve("auto", runtime="openvino") == "bf16"
    assert runtimes.precision_resolve("auto", runtime="onnxruntime") == "f32"  # float32 outside OpenVINO
    assert runtimes.precision_resolve("f32", runtime="openvino") == "f32"  # asked by name: as asked
    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: False)
    assert runtimes.precision_resolve("auto", runtime="openvino") == "f32"
    assert runtimes.precision_resolve("bf16", runtime="openvino") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        runtimes.precision_resolve("fp8", runtime="openvino")


def test_cpu_has_bf16_reads_openvinos_capabilities():
    import openvino as ov

    assert runtimes.cpu_has_bf16() == ("BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
@pytest.mark.parametrize("side", [320, 256])
def test_u2netp_masks_agree_across_runtimes(side):
    from tests.unit.ml.test_ml_background import ellipse_on_texture
    from worker.ml.background import U2NetpRemover

    photo, _ = ellipse_on_texture(seed=2)
    on_openvino = U2NetpRemover(U2NETP_PATH, input_size=side, intra_op_threads=1, runtime="openvino")
    on_onnxruntime = U2NetpRemover(U2NETP_PATH, input_size=side, intra_op_threads=1, runtime="native")
    assert (on_openvino.runtime, on_onnxruntime.runtime) == ("openvino", "onnxruntime")
    mask = on_openvino.predict_mask(photo)
    assert mask.shape == photo.shape[:2] and mask.dtype == np.float32
    assert np.abs(mask - on_onnxruntime.predict_mask(photo)).max() < 1e-3


def test_u2netp_corrupt_file_is_a_model_error_on_openvino(tmp_path):
    from worker.ml.background import U2NetpRemover

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelError, match="cannot load U\\^2-Net-p"):
        U2NetpRemover(corrupt, runtime="openvino")


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
def test_u2netp_precision():
    """bfloat16 runs (at float32 on a CPU without it) and finds the same object; onnxruntime has no bf16 here."""
    from tests.unit.ml.test_ml_background import ellipse_on_texture, iou
    from worker.ml.background import U2NetpRemover

    photo, truth = ellipse_on_texture()
    remover = U2NetpRemover(U2NETP_PATH, input_size=256, intra_op_threads=1, runtime="openvino", precision="bf16")
    assert remover.precision == "bf16"
    assert iou(remover.predict_mask(photo) >= 0.5, truth) > 0.6
    with pytest.raises(ValueError, match="needs the openvino runtime"):
        U2NetpRemover(U2NETP_PATH, runtime="native", precision="bf16")
    with pytest.raises(ValueError, match="unknown precision"):
        U2NetpRemover(U2NETP_PATH, runtime="openvino", precision="int4")


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
def test_u2netp_on_auto_falls_back_to_onnxruntime(monkeypatch):
    """A file OpenVINO cannot take runs on onnxruntime under ``auto``; asked for by name, OpenVINO's error stands."""
    from worker.ml.background import U2NetpRemover

    def refuse(self):
        raise ModelError("OpenVINO cannot read it")

    monkeypatch.setattr(U2NetpRemover, "_openvino_network", refuse)
    assert U2NetpRemover(U2NETP_PATH, input_size=256, intra_op_threads=1, runtime="auto").runtime == "onnxruntime"
    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: True)
    fallen = U2NetpRemover(U2NETP_PATH, input_size=256, intra_op_threads=1, runtime="auto", precision="auto")
    assert (fallen.runtime, fallen.precision, fallen.cache_key) == ("onnxruntime", "f32", "u2netp-256-f32")
    with pytest.raises(ModelError, match="OpenVINO cannot read it"):
        U2NetpRemover(U2NETP_PATH, runtime="openvino")
    with pytest.raises(ModelError, match="OpenVINO cannot read it"):  # bf16 by name: no silent float32
        U2NetpRemover(U2NETP_PATH, runtime="auto", precision="bf16")


@pytest.mark.shared_data
@pytest.mark.skipif(not U2NETP_PATH.is_file(), reason=f"U^2-Net-p weights not found at {U2NETP_PATH}")
@pytest.mark.parametrize("has_bf16", [True, False])
def test_u2netp_auto_precision_is_bf16_where_the_cpu_has_it(monkeypatch, has_bf16):
    """``auto`` (the platform's default) runs bfloat16 on OpenVINO with native bfloat16, float32 elsewhere, and the
    cache key names the precision in use, so caches of prepared photos never mix the two."""
    from worker.ml.background import U2NetpRemover

    monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: has_bf16)
    remover = U2NetpRemover(U2NETP_PATH, input_size=160, intra_op_threads=1, runtime="openvino", precision="auto")
    expected = "bf16" if has_bf16 else "f32"
    assert (remover.precision, remover.cache_key) == (expected, f"u2netp-160-{expected}")
    native = U2NetpRemover(U2NETP_PATH, input_size=160, intra_op_threads=1, runtime="native", precision="auto")
    assert (native.runtime, native.precision) == ("onnxruntime", "f32")
