from dataclasses import replace

import cv2
import numpy as np
import pytest

from sdk.preprocess import Preprocessing, preprocess
from train.data.augment import AugmentConfig, random_affine, warp_image, warp_points
from train.data.cache import ImageCache
from train.data.dataset import LandmarkDataset
from train.data.readers import Sample


def _blobs(hw, pts, sigma=2.5):
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros(hw, np.float32)
    for x, y in pts:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return img


def _centroid(img, x, y, r=7):
    x0, y0 = int(round(x)), int(round(y))
    win = img[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1].astype(np.float64)
    win = np.clip(win - np.percentile(win, 50), 0, None)
    yy, xx = np.mgrid[y0 - r:y0 + r + 1, x0 - r:x0 + r + 1]
    return np.array([(win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()])


def test_points_move_with_pixels():
    rng = np.random.default_rng(0)
    pts = np.array([[60.3, 50.7], [130.5, 90.25], [100.0, 150.8], [170.2, 170.6]])
    img = _blobs((224, 224), pts) * 200
    cfg = AugmentConfig(rotate_deg=25, scale=(0.8, 1.2), translate=0.05, hflip_p=0.5, p_geometric=1.0)
    for _ in range(10):
        m = random_affine(rng, img.shape, cfg)
        out = warp_image(img, m, 0.0)
        for p, q in zip(pts, warp_points(pts, m)):
            assert np.linalg.norm(_centroid(out, *q) - q) < 0.1


def test_dataset_keeps_points_on_their_pixels(tmp_path):
    """Through the whole dataset path (letterbox, intensity and geometric augmentation)."""
    pts = np.array([[80.2, 100.6], [200.7, 210.3], [150.5, 300.2]])
    img = np.clip(_blobs((400, 300), pts, sigma=5) * 230 + 10, 0, 255).astype(np.uint8)
    path = tmp_path / "dots.png"
    cv2.imwrite(str(path), img)
    s = Sample("dots", path, pts, 0.1)
    aug = AugmentConfig(rotate_deg=20, hflip_p=0.5, p_geometric=1.0, p_intensity=1.0, noise_std=0.0, blur_sigma=0.0)
    pre = Preprocessing((256, 256))
    ds = LandmarkDataset([s], ImageCache(tmp_path / "c", pre), stride=4, sigma=1.5, pre=pre, augment=aug)
    for epoch in range(6):
        ds.set_epoch(epoch)
        x, p = ds.input_and_points(0)
        im = x[0]
        for q in p:
            assert np.linalg.norm(_centroid(im, *q, r=9) - q) < 0.25
    # Without augmentation the input is exactly the SDK's preprocessing of the file.
    plain = LandmarkDataset([s], ImageCache(tmp_path / "c", pre), stride=4, sigma=1.5, pre=pre)
    x, p = plain.input_and_points(0)
    ref, lb = preprocess(img, (256, 256), 0.5, 0.25, 0)
    assert np.array_equal(x, ref) and np.allclose(p, lb.to_input(pts))


def test_augmentation_is_reproducible_per_epoch(tmp_path, fixture_samples):
    pre = Preprocessing((128, 128))
    ds = LandmarkDataset(fixture_samples[:1], ImageCache(tmp_path / "c", pre), stride=4, sigma=1.5, pre=pre,
                         augment=AugmentConfig(), seed=3)
    ds.set_epoch(2)
    a = ds[0]["image"]
    ds.set_epoch(3)
    b = ds[0]["image"]
    ds.set_epoch(2)
    assert not np.array_equal(a, b) and np.array_equal(a, ds[0]["image"])


def test_processing_augmentation_is_off_by_default_and_changes_pixels_when_on():
    from train.data.augment import random_intensity, with_processing

    img = np.clip(_blobs((96, 96), [(30, 40), (60, 50)], sigma=6) * 200 + 20, 0, 255).astype(np.uint8)
    base = AugmentConfig()
    assert with_processing(base, 0.0, 1.5) == base          # old recipes: same config, same random stream
    a = random_intensity(img, np.random.default_rng(5), base)
    b = random_intensity(img, np.random.default_rng(5), with_processing(base, 0.0, 1.5))
    assert np.array_equal(a, b)
    on = with_processing(base, 1.0, 1.8, px_scale=3.0, clahe_tiles=1)
    assert on.gamma == (1 / 1.8, 1.8) and on.unsharp_sigma == (4.5, 24.0) and on.clahe_tiles == 1
    c = random_intensity(img, np.random.default_rng(5), replace(on, p_intensity=1.0))
    assert c.dtype == np.float32 and c.shape == img.shape and 0 <= c.min() and c.max() <= 255
    assert np.abs(c - a).mean() > 1.0
    with pytest.raises(ValueError, match="probability"):
        with_processing(base, 1.5, 1.5)
    with pytest.raises(ValueError, match="gamma"):
        with_processing(base, 0.3, 0.8)


def test_machine_artifacts_draw_inside_the_content_only():
    """Other machines' artifacts (shutters, text, a ruler, a tone curve) change the unpadded area, stay in range,
    and leave the padding alone; with artifacts_p 0 the stream is the old one."""
    from train.data.augment import machine_artifacts, random_intensity

    img = np.tile(np.linspace(40, 220, 96, dtype=np.float32), (120, 1)).astype(np.uint8)
    content = (slice(10, 110), slice(0, 96))
    base = AugmentConfig(p_intensity=1.0, noise_std=0.0, blur_sigma=0.0)
    plain = random_intensity(img, np.random.default_rng(3), base, content)
    art = random_intensity(img, np.random.default_rng(3), replace(base, artifacts_p=1.0), content)
    assert art.min() >= 0 and art.max() <= 255
    assert np.abs(art[content] - plain[content]).mean() > 1.0
    assert np.allclose(art[:10], img[:10], atol=1e-3) and np.allclose(art[110:], img[110:], atol=1e-3)
    again = random_intensity(img, np.random.default_rng(3), replace(base, artifacts_p=0.0), content)
    assert np.array_equal(again, plain)
    drawn = machine_artifacts(np.full((200, 160), 0.5, np.float32), np.random.default_rng(1),
                              replace(base, artifacts_p=1.0))
    assert drawn.dtype == np.float32 and (drawn != 0.5).mean() > 0.02
