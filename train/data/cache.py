"""On-disk cache of decoded images, already resized by the SDK's letterbox resize for one input size.

Decoding a 1935x2400 JPEG costs more than a training step's data work; the resized uint8 image is small. The
cached array is exactly what ``sdk.preprocess`` would compute from the file, so validation through the cache equals
what a user of the SDK gets (a test checks it).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Tuple

import numpy as np

from sdk.errors import AnnotationError
from sdk.image_io import load_image
from sdk.preprocess import Letterbox, Preprocessing, letterbox_geometry

from .readers import Sample


def default_cache_dir() -> Path:
    return Path(os.environ.get("CEPHALO_CACHE", Path.home() / ".cache" / "cephalo"))


class ImageCache:
    """Images resized by one :class:`sdk.preprocess.Preprocessing` (its resize step), stored under ``root``; keyed by
    the file (path, size, time) and the preprocessing's key, so a new resize rule or version never reads old
    entries."""

    def __init__(self, root: Path, pre: Preprocessing):
        self.root = Path(root)
        self.pre = pre
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def input_hw(self) -> Tuple[int, int]:
        return self.pre.input_hw

    @property
    def key(self) -> str:
        """The preprocessing key of the images this cache gives (as :attr:`train.data.pack.PackCache.key`)."""
        return self.pre.key

    def _key(self, path: Path) -> str:
        st = path.stat()
        raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.pre.key}"
        return hashlib.sha1(raw.encode()).hexdigest()[:20]

    def get(self, sample: Sample) -> Tuple[np.ndarray, Letterbox]:
        """(new_h, new_w) uint8 resized image and its Letterbox; decodes, checks and stores on first use."""
        f = self.root / f"{self._key(sample.image)}.npz"
        if f.is_file():
            try:
                with np.load(f) as z:
                    img, src = z["image"], tuple(int(v) for v in z["src_hw"])
                lb = letterbox_geometry(src, self.input_hw)
                check_points_inside(sample, src)
                return img, lb
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is rebuilt
        # The SDK's own decode and resize (a full decode: what Detector(fast_decode=False) reads; its default reduced
        # decode of large JPEGs moves Test1 by < 0.01 mm).
        loaded = load_image(sample.image)
        check_points_inside(sample, loaded.full_hw)
        img, lb = self.pre.resized(loaded.gray, loaded.full_hw, loaded.reduction)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, image=img, src_hw=np.array(loaded.full_hw))
            os.replace(tmp, f)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return img, lb


def check_points_inside(sample: Sample, src_hw) -> None:
    h, w = src_hw[:2]
    p = sample.points
    bad = np.where((p[:, 0] < -0.5) | (p[:, 0] > w - 0.5) | (p[:, 1] < -0.5) | (p[:, 1] > h - 0.5))[0]
    if len(bad):
        j = int(bad[0])
        raise AnnotationError(f"{sample.image}: landmark #{j} at ({p[j, 0]:.1f}, {p[j, 1]:.1f}) lies outside the "
                              f"{w}x{h} image")
