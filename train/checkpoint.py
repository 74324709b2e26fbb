"""Checkpoints: written atomically, loaded with ``weights_only=True``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Dict

import torch

from sdk.errors import ModelError, cause

from .files import publish  # noqa: F401  (re-exported)

FORMAT = "cephalo-checkpoint/1"


def save_atomic(obj: Dict[str, Any], path: Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file in the same folder: a kill leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain types only: a checkpoint cannot run code);
    :class:`sdk.ModelError` names the file when it is missing or unreadable. Both stages' loaders call this."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of foreign objects, not a torch file...
        raise ModelError(f"{what} {path} cannot be loaded: {type(e).__name__}: {cause(e)}") from e


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Load and validate one of our first-stage checkpoints; :class:`sdk.ModelError` names what is wrong."""
    ck = read_checkpoint(path)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ModelError(f"checkpoint {path} is not a cephalo checkpoint (expected format {FORMAT!r})")
    for key in ("model", "config", "schema", "epoch"):
        if key not in ck:
            raise ModelError(f"checkpoint {path} lacks {key!r}")
    if ck.get("stage", "first") != "first":
        raise ModelError(f"checkpoint {path} is a {ck['stage']}-stage checkpoint (cephalo train-local), not a "
                         f"first-stage one")
    return ck
