"""How large an image may be, checked from its header before anything is decoded."""
from __future__ import annotations

from typing import Optional

from .errors import ImageTooLarge

MAX_PIXELS = 200_000_000  # 200 MP: larger is an error, not a scan (and would exhaust memory)
MAX_FILE_BYTES = 2 ** 30  # 1 GiB: no single cephalogram file is larger
# A header declaring more than this many pixels per byte of file, for a large image, is a decompression bomb: an
# X-ray's noise keeps any codec far below it (a 106-byte GIF can declare 14000 x 14000).
BOMB_PIXELS_PER_BYTE = 1000
BOMB_MIN_PIXELS = 25_000_000


def check_declared(h: int, w: int, source: str, file_bytes: Optional[int] = None) -> None:
    """:class:`ImageTooLarge` when a header declares an ``h x w`` image too large to decode, or far more pixels
    than ``file_bytes`` could hold (a decompression bomb)."""
    if h * w > MAX_PIXELS:
        raise ImageTooLarge(f"image {source}: {w}x{h} pixels exceeds the limit of {MAX_PIXELS} pixels")
    if file_bytes is not None and h * w > BOMB_MIN_PIXELS and h * w > BOMB_PIXELS_PER_BYTE * file_bytes:
        raise ImageTooLarge(f"image {source}: its header declares {w}x{h} pixels in a file of {file_bytes} bytes, "
                         f"more than any X-ray compresses to (a decompression bomb?); refused before decoding")
