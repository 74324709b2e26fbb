"""A data pack: one ``.npz`` with a labelled set already resized for one model input size.

It carries what training needs (the SDK's resized images, original sizes, points, spacings, ids) in a few MB
instead of the full-size images, so a run can move to a machine that lacks the data folder (a rented GPU box).
The images are exactly what :class:`ImageCache` holds, so a run from a pack sees the same inputs as one from the
folder. Stored without pickles (``allow_pickle=False`` on load).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from sdk.errors import AnnotationError, cause
from sdk.preprocess import RESIZE_RULE, Letterbox, letterbox_geometry

from ..checkpoint import publish
from .cache import ImageCache
from .readers import Sample

PACK_FORMAT = "cephalo-pack/1"


def is_pack(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() == ".npz"


def write_pack(samples: Sequence[Sample], cache: ImageCache, path: Path, info: str = "") -> Path:
    """Write ``samples`` (decoded and resized through ``cache``) to ``path`` atomically."""
    if not samples:
        raise AnnotationError("a data pack needs at least one sample")
    path = Path(path)
    arrays: Dict[str, np.ndarray] = {}
    src_hw = []
    for i, s in enumerate(samples):
        img, lb = cache.get(s)
        arrays[f"image_{i}"] = img
        src_hw.append((lb.src_h, lb.src_w))
    head = {"format": PACK_FORMAT, "input_hw": list(cache.input_hw), "preprocessing": cache.pre.key,
            "ids": [s.id for s in samples], "info": info}
    arrays.update(header=np.frombuffer(json.dumps(head).encode(), dtype=np.uint8),
                  points=np.stack([s.points for s in samples]).astype(np.float64),
                  spacing=np.array([s.spacing for s in samples], dtype=np.float64),
                  src_hw=np.array(src_hw, dtype=np.int64))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class PackCache:
    """The :class:`ImageCache` interface over a loaded pack: ``get(sample)`` -> (resized image, Letterbox). ``key``:
    the preprocessing key the pack was resized with."""

    def __init__(self, images: Dict[str, np.ndarray], src_hw: Dict[str, Tuple[int, int]], input_hw: Tuple[int, int],
                 key: str):
        self.images, self.src_hw, self.input_hw, self.key = images, src_hw, tuple(input_hw), key

    def get(self, sample: Sample) -> Tuple[np.ndarray, Letterbox]:
        try:
            img = self.images[sample.id]
        except KeyError:
            raise AnnotationError(f"sample {sample.id!r} is not in this data pack") from None
        return img, letterbox_geometry(self.src_hw[sample.id], self.input_hw)


def read_pack(path: Path, k: int) -> Tuple[List[Sample], PackCache, str]:
    """(samples, cache, info) of a pack written by :func:`write_pack`; ``k`` = the schema's landmark count."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"data pack {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(bytes(z["header"]).decode())
            if head.get("format") != PACK_FORMAT:
                raise AnnotationError(f"{path} is not a data pack (expected format {PACK_FORMAT!r})")
            ids = list(head["ids"])
            points, spacing, src = z["points"], z["spacing"], z["src_hw"]
            images = {sid: z[f"image_{i}"] for i, sid in enumerate(ids)}
    except AnnotationError:
        raise
    except Exception as e:  # not a zip, truncated, missing arrays
        raise AnnotationError(f"data pack {path} cannot be read: {type(e).__name__}: {cause(e)}") from e
    if points.shape != (len(ids), k, 2):
        raise AnnotationError(f"data pack {path} has points of shape {points.shape}; the schema needs "
                              f"({len(ids)}, {k}, 2)")
    samples = [Sample(sid, Path(f"{path.name}#{sid}"), points[i].copy(), float(spacing[i]))
               for i, sid in enumerate(ids)]
    hw = tuple(int(v) for v in head["input_hw"])
    # packs written before the key was recorded were resized by version 1 of the one resize rule
    key = head.get("preprocessing", f"{RESIZE_RULE}-v1-{hw[0]}x{hw[1]}")
    cache = PackCache(images, {sid: (int(src[i, 0]), int(src[i, 1])) for i, sid in enumerate(ids)}, hw, key)
    return samples, cache, str(head.get("info", ""))
