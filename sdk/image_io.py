"""Reading images into the SDK's working form: a (H, W) uint8 grayscale array, plus a pixel spacing when the file
says one (DICOM).

Accepted: a path (PNG, JPEG with EXIF orientation applied, BMP, TIFF, DICOM), the bytes of such a file, or a numpy
array (H, W) / (H, W, 1|3|4) of uint8 or uint16. 16-bit data is windowed linearly from its min to its max into
8 bits, the range the models are trained on, after isolated outliers are set aside (see :func:`window_to_u8`).

``reduce_for=(h, w)``: an 8-bit JPEG much larger than the model input is decoded at 1/2, 1/4 or 1/8 scale by
libjpeg's DCT scaling (a cephalogram is ~10x the model input; full decoding and the area resizes were ~25% of a
``Detector`` call), keeping at least ``keep`` (default ``REDUCE_MARGIN``) times the size it will be resized to:
the Detector asks for its local stage's fine scale, so no stage ever enlarges a reduced decode.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

from .limits import MAX_FILE_BYTES, MAX_PIXELS, check_declared

MIN_SIDE = 32            # smaller than this is not a cephalogram
# OpenCV's own decoder limit (read once, at its first decode), for formats whose header is not read here.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
# The SDK is quiet: a corrupt file is an ImageError, not lines of OpenCV's log on the host's stderr.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

import cv2  # noqa: E402  (after the limit above)
import numpy as np  # noqa: E402

from .errors import ImageError, ImageTooLarge  # noqa: E402

REDUCE_MARGIN = 2.0      # a reduced decode keeps >= 2x the letterboxed size, so the area resize still averages
_REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``gray`` (H, W) uint8; ``spacing`` mm per pixel (row, col) from the file, or None."""

    gray: np.ndarray
    spacing: Optional[float] = None
    source: str = "<array>"
    reduction: int = 1                # gray is the image decoded at 1/reduction scale (JPEG DCT scaling)
    src_hw: Optional[Tuple[int, int]] = None   # the full image's (H, W), displayed orientation
    notes: Tuple[str, ...] = ()       # what the user should know about the file (e.g. an unusable spacing tag)

    @property
    def full_hw(self) -> Tuple[int, int]:
        """(H, W) of the full-resolution image (coordinates are reported in its pixels)."""
        return self.src_hw if self.src_hw is not None else (int(self.gray.shape[0]), int(self.gray.shape[1]))


def load_image(image: ImageInput, reduce_for: Optional[Tuple[int, int]] = None,
               keep: float = REDUCE_MARGIN) -> LoadedImage:
    """Decode ``image`` (path, file bytes or array) to a :class:`LoadedImage`; :class:`ImageError` names the problem.

    ``reduce_for``: the model input (h, w) the image is for; large 8-bit JPEGs are then decoded at reduced scale
    (see the module doc), to no less than ``keep`` times the letterboxed size. Arrays and other formats are never
    reduced.
    """
    if isinstance(image, np.ndarray):
        return LoadedImage(to_gray_u8(image, "<array>"))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(image), "<bytes>", reduce_for, keep)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"image file {path} does not exist")
        if path.is_dir():
            raise ImageError(f"image path {path} is a folder, not a file")
        if not path.is_file():      # a device (/dev/zero), a FIFO or a socket would be read without end
            raise ImageError(f"image path {path} is not a regular file (a device, pipe or socket)")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageTooLarge(f"image file {path}: {path.stat().st_size} bytes exceeds the limit of "
                             f"{MAX_FILE_BYTES} bytes")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"image file {path}: cannot read it ({e})") from e
        return _decode_bytes(data, str(path), reduce_for, keep)
    raise ImageError(f"image must be a path, bytes or a numpy array, got {type(image).__name__}")


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def jpeg_header(data: bytes) -> Optional[Tuple[int, int, int]]:
    """(height, width, bits per sample) from a JPEG's frame header, or None if ``data`` is not a JPEG whose frame
    header comes before its first scan."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:              # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        if marker in _SOF:
            if i + 9 > n:
                return None
            return (int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big"), data[i + 4])
        if marker in (0xDA, 0xD9):      # scan or end before any frame header
            return None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _reduced_jpeg(buf: np.ndarray, data: bytes, reduce_for: Tuple[int, int], source: str,
                  keep: float = REDUCE_MARGIN) -> Optional[LoadedImage]:
    """A reduced-scale decode of an 8-bit JPEG, or None when none applies (small image, other format)."""
    head = jpeg_header(data)
    if head is None or head[2] != 8 or min(head[:2]) < MIN_SIDE:
        return None
    h, w = head[0], head[1]
    for r in (8, 4, 2):
        # The letterboxed size for either orientation (EXIF may swap the axes) must stay well under the decode.
        for hh, ww in ((h, w), (w, h)):
            s = min(reduce_for[0] / hh, reduce_for[1] / ww)
            if min(hh / r, ww / r) < max(keep, REDUCE_MARGIN) * min(hh, ww) * s:
                break
        else:
            img = cv2.imdecode(buf, _REDUCED[r])
            if img is None:
                return None
            got = img.shape[:2]
            if got == (_ceil_div(h, r), _ceil_div(w, r)):
                full = (h, w)
            elif got == (_ceil_div(w, r), _ceil_div(h, r)):   # EXIF orientation turned it
                full = (w, h)
            else:
                return None
            if full[0] * full[1] > MAX_PIXELS:
                raise ImageTooLarge(f"image {source}: {full[1]}x{full[0]} pixels exceeds the limit of {MAX_PIXELS} "
                                 f"pixels")
            return LoadedImage(img, None, source, r, full)
    return None


def _gif_info(data: bytes) -> Tuple[Tuple[int, int], int]:
    """((height, width) of a GIF's canvas, the largest of its logical screen and its frames; frames counted up
    to 2), walking its blocks without decoding. A decoder allocates the canvas the header declares."""
    h, w = int.from_bytes(data[8:10], "little"), int.from_bytes(data[6:8], "little")
    i = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    frames = 0
    while i < len(data) and frames < 2:
        kind = data[i]
        if kind == 0x2C and i + 10 <= len(data):           # an image: its own size may exceed the screen's
            frames += 1
            w = max(w, int.from_bytes(data[i + 1:i + 3], "little") + int.from_bytes(data[i + 5:i + 7], "little"))
            h = max(h, int.from_bytes(data[i + 3:i + 5], "little") + int.from_bytes(data[i + 7:i + 9], "little"))
            flags = data[i + 9]
            i += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        elif kind == 0x21:                                   # an extension: label, then sub-blocks
            i += 2
        else:
            break
        while i < len(data) and data[i]:                     # sub-blocks up to the empty one
            i += data[i] + 1
        i += 1
    return (h, w), frames


def _webp_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) from a WebP's first chunk (VP8X canvas, VP8 key frame or VP8L header)."""
    kind = data[12:16]
    if kind == b"VP8X" and len(data) >= 30:
        return 1 + int.from_bytes(data[27:30], "little"), 1 + int.from_bytes(data[24:27], "little")
    if kind == b"VP8 " and len(data) >= 30:
        return int.from_bytes(data[28:30], "little") & 0x3FFF, int.from_bytes(data[26:28], "little") & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    return None


def header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) from the header of a PNG, JPEG, GIF, WebP, BMP, TIFF or PNM file, without decoding; None for
    other formats or a header too short to say."""
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 13:
        return _gif_info(data)[0]
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    head = jpeg_header(data)
    if head is not None:
        return head[0], head[1]
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[22:26], "little", signed=True)), abs(int.from_bytes(data[18:22], "little",
                                                                                           signed=True))
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(data)
    m = re.match(rb"P[1-6](?:\s+|#[^\n]*\n)+(\d+)(?:\s+|#[^\n]*\n)+(\d+)", data[:512])
    if m:
        return int(m.group(2)), int(m.group(1))
    return None


def _tiff_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) of a TIFF's first image (tags 257/256 of its first IFD), or None."""
    order = "little" if data[:2] == b"II" else "big"
    at = int.from_bytes(data[4:8], order)
    if at + 2 > len(data):
        return None
    count = int.from_bytes(data[at:at + 2], order)
    size = {}
    for i in range(min(count, 4096)):
        e = at + 2 + 12 * i
        if e + 12 > len(data):
            break
        tag, typ = int.from_bytes(data[e:e + 2], order), int.from_bytes(data[e + 2:e + 4], order)
        if tag in (256, 257) and typ in (3, 4):
            size[tag] = int.from_bytes(data[e + 8:e + (10 if typ == 3 else 12)], order)
    return (size[257], size[256]) if len(size) == 2 else None


def _check_png_chunks(data: bytes, source: str) -> bytes:
    """The PNG without its colour profile (iCCP: meaningless for an X-ray, and libpng prints warnings about
    malformed ones on the host's stderr); :class:`ImageError` when a chunk's length runs past the end: a decoder
    would allocate what the length claims (up to 4 GB for a 12 kB file) before finding the data missing."""
    i = 8
    while i + 8 <= len(data):
        length, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if i + 12 + length > len(data):
            raise ImageError(f"image {source}: PNG chunk {kind!r} claims {length} bytes past the end of the file "
                             f"(corrupt or truncated)")
        if kind == b"IEND":
            return data
        if kind == b"iCCP":
            data = data[:i] + data[i + 12 + length:]
            continue
        i += 12 + length
    raise ImageError(f"image {source}: PNG file ends before its IEND chunk (truncated)")


def check_size(h: int, w: int, source: str, file_bytes: Optional[int] = None) -> None:
    """:class:`ImageError` when an ``h x w`` image is too small to be a cephalogram, or :func:`check_declared`'s."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageError(f"image {source}: {w}x{h} pixels is too small (each side must be >= {MIN_SIDE})")
    check_declared(h, w, source, file_bytes)


def _decode_bytes(data: bytes, source: str, reduce_for: Optional[Tuple[int, int]] = None,
                  keep: float = REDUCE_MARGIN) -> LoadedImage:
    if not data:
        raise ImageError(f"image {source} is empty (0 bytes)")
    if _is_dicom(data):
        from .dicom import read_dicom  # pydicom is an optional extra

        gray, spacing, notes = read_dicom(data, source)
        return LoadedImage(to_gray_u8(gray, source), spacing, source, notes=notes)
    size = header_size(data)
    if size is not None:          # refuse absurd sizes before a decoder allocates them
        check_size(size[0], size[1], source, len(data))
    notes: Tuple[str, ...] = ()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        data = _check_png_chunks(data, source)
    elif data[:6] in (b"GIF87a", b"GIF89a") and _gif_info(data)[1] > 1:
        notes = ("an animated GIF: its first frame was read",)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        if reduce_for is not None:
            reduced = _reduced_jpeg(buf, data, reduce_for, source, keep)
            if reduced is not None:
                return reduced
        # GRAYSCALE|ANYDEPTH keeps 16-bit data and, unlike IMREAD_UNCHANGED, applies the EXIF orientation.
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:
        msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise ImageError(f"image {source}: the decoder refused it ({msg})") from None
    except MemoryError:
        raise ImageError(f"image {source}: not enough memory to decode it") from None
    if img is None:
        if size is not None:
            raise ImageError(f"image {source}: its header says {size[1]}x{size[0]} pixels but the image data is "
                             f"corrupt or truncated")
        raise ImageError(f"image {source} is not a readable image file (corrupt or unsupported format)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"image {source}: {img.dtype} pixels are not supported; give 8- or 16-bit images")
    return LoadedImage(to_gray_u8(img, source), None, source, notes=notes)


def to_gray_u8(arr: np.ndarray, source: str = "<array>") -> np.ndarray:
    """(H, W) / (H, W, 1|3|4) uint8 or uint16 -> (H, W) uint8 gray. RGB(A) uses luminance; alpha is ignored."""
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"image {source}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"image {source}: dtype {arr.dtype} is not supported; give uint8 or uint16 pixels")
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        else:
            rgb = arr[:, :, :3].astype(np.float32)
            # Rec. 601 luma, the weights OpenCV uses for RGB -> gray.
            lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            arr = np.clip(np.rint(lum), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
    elif arr.ndim != 2:
        raise ImageError(f"image {source}: shape {arr.shape} is not (H, W) or (H, W, 1|3|4)")
    check_size(arr.shape[0], arr.shape[1], source)
    if arr.dtype == np.uint16:
        arr = window_to_u8(arr)
    return np.ascontiguousarray(arr)


WINDOW_CORE = 1.0    # percent cut from each end of the histogram to find the anatomy's core range
WINDOW_FENCE = 0.25  # values further than this fraction of the core range beyond it are outliers


def window_range(arr: np.ndarray) -> Tuple[float, float]:
    """(lo, hi) for 16-bit windowing: the min and max of the values that lie within a fence of ``WINDOW_FENCE`` x
    the 1st-99th percentile range around that range.

    A saturated marker pixel or a burned-in label at 65535 beside 12-bit anatomy would otherwise squeeze the
    anatomy into a few grey levels (the bundled model then misses by ~11 mm); an image without such outliers
    keeps its plain min-max window, so its pixels are the same as before. Outliers covering more than
    ``WINDOW_CORE`` percent of the image at one end are taken for anatomy.
    """
    counts = cv2.calcHist([np.ascontiguousarray(arr)], [0], None, [65536], [0, 65536]).ravel().astype(np.float64)
    present = np.flatnonzero(counts)
    cum = np.cumsum(counts)
    n = cum[-1]
    p_lo = float(np.searchsorted(cum, n * WINDOW_CORE / 100.0, side="right"))
    p_hi = float(np.searchsorted(cum, n * (1.0 - WINDOW_CORE / 100.0), side="left"))
    fence = WINDOW_FENCE * (p_hi - p_lo)
    inside = present[(present >= p_lo - fence) & (present <= p_hi + fence)]
    return float(inside[0]), float(inside[-1])


def window_to_u8(arr: np.ndarray) -> np.ndarray:
    """(H, W) uint16 -> uint8: linear map of :func:`window_range` to [0, 255], clipped; a constant image maps to 0."""
    lo, hi = window_range(arr)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    lut = np.clip(np.rint((np.arange(65536, dtype=np.float32) - lo) * np.float32(255.0 / (hi - lo))), 0, 255)
    return lut.astype(np.uint8)[arr]     # a table lookup: ~4x faster than the arithmetic on a 5 MP image
