"""The one Preprocessing spec: what the model metadata, the training config, caches and packs carry and check."""
import json

import numpy as np
import pytest

from sdk.preprocess import Preprocessing, preprocess


def test_apply_is_resize_pad_normalise_and_the_free_function_is_the_same():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (300, 200), dtype=np.uint8)
    pre = Preprocessing((128, 128), channels=3, mean=0.4, std=0.2, pad_value=0.1)
    x, lb = pre.apply(g)
    small, lb2 = pre.resized(g)
    assert lb == lb2 and x.shape == (3, 128, 128)
    assert np.array_equal(x, pre.normalize(pre.pad(small, lb)))
    assert np.array_equal(x, preprocess(g, (128, 128), 0.4, 0.2, 0.1, 3)[0])
    # the padding holds the pad value (on the [0, 1] scale, as mean and std), normalised
    assert lb.pad_left > 0 and np.allclose(x[:, :, 0], (round(0.1 * 255) / 255 - 0.4) / 0.2, atol=1e-6)


def test_key_names_rule_version_and_size_and_other_versions_are_refused():
    pre = Preprocessing((320, 320))
    assert pre.key == "letterbox-area-v1-320x320" and Preprocessing((384, 384)).key != pre.key
    with pytest.raises(ValueError, match="v2"):
        Preprocessing((320, 320), version=2)
    with pytest.raises(ValueError, match="'stretch'"):
        Preprocessing((320, 320), resize="stretch")


def test_the_model_metadata_and_the_training_config_give_the_same_spec():
    from sdk.metadata import ModelMeta
    from sdk.schemas import ISBI19
    from train.config import TrainConfig

    cfg = TrainConfig(input_size=320)
    meta = ModelMeta(ISBI19, 320, 320, 1, 0.5, 0.25, 0.0, 4, 1.5,
                     extra={"preprocessing": {"resize": "letterbox-area", "version": 1}})
    assert meta.preprocessing == cfg.preprocessing


def test_a_model_made_with_another_preprocessing_is_refused(tiny_onnx, tmp_path):
    import onnx

    from sdk import Detector, ModelError
    from sdk.metadata import META_KEY

    m = onnx.load(str(tiny_onnx["onnx"]))
    for p in m.metadata_props:
        if p.key == META_KEY:
            d = json.loads(p.value)
            assert d["extra"]["preprocessing"] == {"resize": "letterbox-area", "version": 1}   # export writes it
            d["extra"]["preprocessing"]["version"] = 2
            p.value = json.dumps(d)
    onnx.save(m, str(tmp_path / "v2.onnx"))
    with pytest.raises(ModelError, match="v2.onnx.*v2"):
        Detector(tmp_path / "v2.onnx", backend="onnxruntime")


def test_cache_and_pack_keys_follow_the_spec(tmp_path, fixture_samples, monkeypatch):
    from train.data.cache import ImageCache
    from train.data.pack import read_pack, write_pack

    a = ImageCache(tmp_path / "c", Preprocessing((128, 128)))
    b = ImageCache(tmp_path / "c", Preprocessing((160, 160)))
    s = fixture_samples[0]
    assert a._key(s.image) != b._key(s.image)
    p = write_pack(fixture_samples[:2], a, tmp_path / "p.npz")
    _, cache, _ = read_pack(p, 19)
    assert cache.key == a.key == "letterbox-area-v1-128x128"
