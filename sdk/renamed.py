"""The old names of arguments, in one table. Each still works as its new name: ``Detector(refine=)`` as
``local_stage=``, ``Detector(labels=NAME)`` and the command line's hidden ``--labels`` as ``site=`` / ``--site``
(``adapt --labels`` as ``--base``, the site a profile is learnt on)."""
from __future__ import annotations

import warnings
from typing import Dict, Type

from .errors import CephaloError

RENAMED = {"refine": "local_stage", "labels": "site"}


def renamed(old: Dict[str, object], new: Dict[str, object], where: str, warn: bool = True,
            error: Type[CephaloError] = CephaloError) -> Dict[str, object]:
    """``new`` (new name -> value given, None where not given) with the values passed under old names (``old``)
    moved onto their new names. An unknown name is a TypeError, as Python gives for a wrong keyword; an old name
    given beside its new one is an ``error``. ``warn``: a DeprecationWarning for each old name used (the command
    line keeps its hidden options quiet)."""
    unknown = sorted(set(old) - set(RENAMED))
    if unknown:
        raise TypeError(f"{where} got an unexpected keyword argument {unknown[0]!r}")
    out = dict(new)
    for name, value in old.items():
        to = RENAMED[name]
        if out.get(to) is not None:
            raise error(f"{where}: {name}= is the old name of {to}=; give one ({name}={value!r}, "
                               f"{to}={out[to]!r})")
        if warn:
            warnings.warn(f"{where}: {name}= is now {to}=", DeprecationWarning, stacklevel=3)
        out[to] = value
    return out
