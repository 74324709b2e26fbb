"""Publishing a finished file atomically, with the permissions a plain write would give. No torch: the
conversion and benchmarks use it without the training extra."""
from __future__ import annotations

import os


def publish(tmp, path) -> None:
    """Move a finished temporary file onto ``path`` (atomic rename) with the permissions a plain write would give
    (``mkstemp`` makes files 0600)."""
    m = os.umask(0)
    os.umask(m)
    os.chmod(tmp, 0o666 & ~m)
    os.replace(tmp, path)
