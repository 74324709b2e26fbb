"""Re-framing: a wider field than the training images' is cropped to their framing and read again."""
import numpy as np
import pytest

from sdk.framing import Framing, crop_or_pad, framing


def test_frame_and_scale_change_by_hand():
    f = Framing(left=0.5, right=0.5, top=1.0, bottom=0.0, tolerance=0.15)
    xy = np.array([[100.0, 200.0], [300.0, 400.0]])          # extent 200 x 200
    assert f.frame(xy) == (0.0, 0.0, 400.0, 400.0)
    # a 400 x 400 frame in a 400 x 400 image: as trained; in an 800 x 800 image the anatomy is half size
    assert f.scale_change(xy, (400, 400), (100, 100)) == pytest.approx(1.0)
    assert f.scale_change(xy, (800, 800), (100, 100)) == pytest.approx(2.0)
    assert not f.needs_reframe(xy, (400, 400), (100, 100)) and not f.needs_reframe(xy, (450, 450), (100, 100))
    assert f.needs_reframe(xy, (800, 800), (100, 100))
    assert not f.needs_reframe(xy, (200, 200), (100, 100))      # tighter fields are left to the augmentation
    assert not f.needs_reframe(xy, (2000, 2000), (100, 100))    # 5x: points that close are a failed reading


def test_crop_or_pad_keeps_pixels_in_place():
    g = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = crop_or_pad(g, (-1, 2, 3, 6), pad=255)
    assert out.shape == (4, 4)
    assert np.array_equal(out[:2, 1:], g[2:4, 0:3]) and (out[:, 0] == 255).all() and (out[2:] == 255).all()


def test_bundled_framing_fitted_on_training_labels():
    f = framing("isbi19")
    assert f is not None and "train" in f.source
    # ISBI's frame is about twice the landmarks' extent: more room behind the skull and above it than in front
    assert 1.8 < 1 + f.left + f.right < 2.3 and 2.0 < 1 + f.top + f.bottom < 2.5 and f.left > f.right


def test_a_wide_field_is_reread_at_the_training_scale(fixture_samples):
    """The same cephalogram on a canvas 1.6x as wide and high (another machine's field) is re-read cropped: its
    points land where the plain image's do, and the result says it was re-read."""
    from sdk import Detector
    from sdk.image_io import load_image

    s = fixture_samples[0]
    g = load_image(s.image).gray
    h, w = g.shape
    canvas = np.zeros((int(h * 1.6), int(w * 1.6)), np.uint8)
    oy, ox = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
    canvas[oy:oy + h, ox:ox + w] = g
    det = Detector(backend="onnxruntime", threads=2)
    plain, wide = det(g), det(canvas)
    off = Detector(backend="onnxruntime", threads=2, reframe=False)(canvas)
    assert not any("re-read" in n for n in plain.notes)
    assert any("re-read" in n for n in wide.notes) and not any("re-read" in n for n in off.notes)
    assert wide.image_size == canvas.shape
    moved = np.linalg.norm(wide.xy - np.array([ox, oy]) - plain.xy, axis=1)
    moved_off = np.linalg.norm(off.xy - np.array([ox, oy]) - plain.xy, axis=1)
    assert np.median(moved) < 1.0 and np.median(moved) <= np.median(moved_off)
