import io

import cv2
import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk.errors import ImageError
from sdk.image_io import load_image, to_gray_u8

IMG = ISBI_FIX / "images" / "001.jpg"


def test_path_bytes_and_array_agree():
    a = load_image(IMG).gray
    b = load_image(IMG.read_bytes()).gray
    c = load_image(cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)).gray
    assert a.shape == (600, 484) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_rgb_rgba_and_16bit():
    g = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    rgb = np.repeat(g[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full_like(g, 7)[:, :, None]], axis=2)
    assert np.array_equal(to_gray_u8(rgb), g)
    assert np.array_equal(to_gray_u8(rgba), g)
    g16 = g.astype(np.uint16) * 200 + 1000
    out = to_gray_u8(g16)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.abs(out.astype(int) - np.rint(g * 255.0 / 252)).max() <= 1


def test_16bit_outliers_do_not_squeeze_the_anatomy():
    # 12-bit anatomy in a 16-bit container beside a saturated pixel, a burned-in label at 65535 and a dead pixel at 0
    rng = np.random.default_rng(0)
    anat = rng.integers(900, 3800, size=(200, 300)).astype(np.uint16)
    img = anat.copy()
    img[0, 0] = 65535
    img[10:25, 10:30] = 65535          # 0.5% of the pixels (the window tolerates up to 1% at each end)
    img[-1, -1] = 0
    out = to_gray_u8(img)
    lo, hi = float(anat.min()), float(anat.max())
    want = np.clip(np.rint((anat.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))), 0, 255)
    keep = np.ones(img.shape, bool)
    keep[0, 0] = keep[-1, -1] = False
    keep[10:25, 10:30] = False
    assert np.abs(out[keep].astype(int) - want[keep]).max() <= 1     # the anatomy spans 0..255 as on its own
    assert out[0, 0] == 255 and out[15, 15] == 255 and out[-1, -1] == 0   # outliers clip to the ends


def test_16bit_without_outliers_keeps_its_min_max_window():
    g = np.tile(np.arange(256, dtype=np.uint8), (40, 1))
    assert np.array_equal(to_gray_u8(g.astype(np.uint16) * 257), g)
    assert to_gray_u8(np.full((40, 40), 7, np.uint16)).max() == 0


def test_16bit_png_file(tmp_path):
    g16 = (np.tile(np.linspace(0, 4095, 100), (80, 1))).astype(np.uint16)
    p = tmp_path / "x16.png"
    cv2.imwrite(str(p), g16)
    out = load_image(p).gray
    assert out.shape == (80, 100) and out[:, 0].max() == 0 and out[:, -1].min() == 255


def test_exif_orientation_applied(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    g = np.zeros((60, 100), np.uint8)
    g[5:15, 5:15] = 255                       # bright square top-left
    im = PIL.fromarray(g)
    exif = im.getexif()
    exif[0x0112] = 6                          # rotate 90 CW to display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(buf.getvalue()).gray
    assert out.shape == (100, 60)             # displayed upright: rotated
    ys, xs = np.nonzero(out > 128)
    assert xs.mean() > 40 and ys.mean() < 20  # top-left moved to top-right


def _dicom(tmp_path, photometric="MONOCHROME2", spacing_tag="ImagerPixelSpacing"):
    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    px = np.tile(np.linspace(0, 4000, 80), (64, 1)).astype(np.uint16)
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    setattr(ds, spacing_tag, [0.125, 0.125])
    ds.PixelData = px.tobytes()
    path = tmp_path / "x.dcm"
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.mark.parametrize("tag", ["ImagerPixelSpacing", "PixelSpacing"])
def test_dicom_spacing(tmp_path, tag):
    li = load_image(_dicom(tmp_path, spacing_tag=tag))
    assert li.spacing == pytest.approx(0.125)
    assert li.gray[:, 0].max() == 0 and li.gray[:, -1].min() == 255


def test_dicom_monochrome1_inverted(tmp_path):
    li = load_image(_dicom(tmp_path, "MONOCHROME1"))
    assert li.gray[:, 0].min() == 255 and li.gray[:, -1].max() == 0


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.png", "does not exist"),
    (lambda p: (p / "empty.png").write_bytes(b"") and p / "empty.png" or p / "empty.png", "empty"),
    (lambda p: (p / "bad.jpg").write_bytes(IMG.read_bytes()[:300]) and p / "bad.jpg" or p / "bad.jpg",
     "not a readable|corrupt or truncated"),
    (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt" or p / "notes.txt", "not a readable"),
    (lambda p: p, "folder"),
])
def test_bad_files(tmp_path, make, match):
    with pytest.raises(ImageError, match=match):
        load_image(make(tmp_path))


@pytest.mark.parametrize("arr,match", [
    (np.zeros((0, 0), np.uint8), "too small"),
    (np.zeros((10, 500), np.uint8), "too small"),
    (np.zeros((64, 64), np.float32), "dtype"),
    (np.zeros((64, 64, 2), np.uint8), "shape"),
    (np.zeros((64, 64, 3, 1), np.uint8), "shape"),
])
def test_bad_arrays(arr, match):
    with pytest.raises(ImageError, match=match):
        load_image(arr)


def test_absurdly_large_refused():
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=(20000, 20000), strides=(0, 0))
    with pytest.raises(ImageError, match="exceeds"):
        to_gray_u8(big)


def test_wrong_type():
    with pytest.raises(ImageError, match="path, bytes or a numpy array"):
        load_image(12345)


def test_jpeg_header_and_reduced_decode(tmp_path):
    import cv2

    from sdk.image_io import jpeg_header

    g = (np.add.outer(np.arange(1001), np.arange(777)) % 251).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", g)
    data = enc.tobytes()
    assert jpeg_header(data) == (1001, 777, 8)
    assert jpeg_header(b"\x89PNG\r\n\x1a\n" + data) is None and jpeg_header(data[:2]) is None
    half = load_image(data, reduce_for=(192, 192))          # letterboxed 192x149: 1/2 keeps > 2x, 1/4 does not
    assert half.reduction == 2 and half.gray.shape == (501, 389) and half.full_hw == (1001, 777)
    assert load_image(data, reduce_for=(64, 64)).reduction == 4
    full = load_image(data, reduce_for=(384, 384))          # 2x margin not met at 1/2: full decode
    assert full.reduction == 1 and full.full_hw == (1001, 777) and full.gray.shape == (1001, 777)
    assert load_image(data).reduction == 1                  # never without reduce_for
    png = cv2.imencode(".png", g)[1].tobytes()
    assert load_image(png, reduce_for=(64, 64)).reduction == 1   # only JPEGs are reduced


def test_reduced_decode_keeps_exif_orientation_and_geometry():
    PIL = pytest.importorskip("PIL.Image")
    from sdk.preprocess import prepare

    g = np.zeros((600, 1000), np.uint8)
    g[50:150, 50:150] = 255                   # bright square near the top-left (stored orientation)
    im = PIL.fromarray(g)
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    fast = load_image(buf.getvalue(), reduce_for=(128, 128))
    assert fast.reduction == 2 and fast.full_hw == (1000, 600)   # displayed (turned) size of the full image
    a, lb_a, _ = prepare(buf.getvalue(), (128, 128), 0.5, 0.25, 0.0, fast_decode=True)
    b, lb_b, _ = prepare(buf.getvalue(), (128, 128), 0.5, 0.25, 0.0)
    assert lb_a == lb_b
    assert np.abs(a - b).mean() < 0.05        # same picture, a little different filtering
