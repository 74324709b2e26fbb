"""Atomic output: files appear only when complete."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from train.files import publish


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def atomic_ir(xml_path: Path) -> Iterator[Path]:
    """Like :func:`atomic_path` for an OpenVINO IR pair: yields a temporary .xml path; its .bin moves first, then
    the .xml, so a present .xml always has its complete .bin."""
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(dir=xml_path.parent, prefix=f".{xml_path.stem}."))
    try:
        tmp_xml = tmpdir / xml_path.name
        yield tmp_xml
        os.replace(tmp_xml.with_suffix(".bin"), xml_path.with_suffix(".bin"))
        os.replace(tmp_xml, xml_path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
