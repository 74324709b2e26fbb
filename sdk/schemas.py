"""Landmark schemas: the ordered landmark names a model predicts. K always comes from here.

Built in:
- ``isbi19``: the 19 landmarks of the ISBI 2015 challenge (Wang et al., IEEE TMI 2015), in the challenge's order.
- ``aariz29``: the 29 landmarks of the Aariz dataset (Khalid et al., 2023), in the dataset's order.
- ``ceph31``: ``aariz29`` plus ``ruler_p1`` / ``ruler_p2``, two points on the cephalostat ruler whose known
  distance (``ruler_mm``) gives the pixel spacing of an image without DICOM tags.

A custom schema is a JSON file ``{"id": "...", "landmarks": ["name", ...], "ruler": ["p1", "p2", 10.0]}`` or a
text file with one landmark name per line (its id is the file's stem).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from .errors import SchemaError

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-']+$")


@dataclass(frozen=True)
class Schema:
    """An ordered list of landmark names.

    ``ruler`` is ``(name_a, name_b, distance_mm)`` when two of the landmarks are calibration points a known
    distance apart, else ``None``.
    """

    id: str
    names: Tuple[str, ...]
    ruler: Optional[Tuple[str, str, float]] = None
    aliases: Tuple[Tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self):
        if not self.names:
            raise SchemaError(f"schema {self.id!r} has no landmarks")
        seen = set()
        for n in self.names:
            if not isinstance(n, str) or not _NAME_RE.match(n):
                raise SchemaError(f"schema {self.id!r}: landmark name {n!r} must be letters, digits, '_', '-' or \"'\"")
            if n in seen:
                raise SchemaError(f"schema {self.id!r}: landmark {n!r} appears twice")
            seen.add(n)
        if self.ruler is not None:
            a, b, d = self.ruler
            for n in (a, b):
                if n not in seen:
                    raise SchemaError(f"schema {self.id!r}: ruler point {n!r} is not one of its landmarks")
            if not float(d) > 0:
                raise SchemaError(f"schema {self.id!r}: ruler distance must be > 0 mm, got {d!r}")

    @property
    def k(self) -> int:
        """Number of landmarks."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of ``name`` (or one of its aliases) in the schema; ``KeyError`` if absent."""
        try:
            return self._positions[_canonical(name)]
        except KeyError:
            raise KeyError(name) from None

    @cached_property
    def _positions(self) -> Dict[str, int]:
        """Canonical name or alias -> position (names win over aliases), built once per schema."""
        out = {_canonical(alias): self.names.index(target) for alias, target in self.aliases}
        out.update({_canonical(n): i for i, n in enumerate(self.names)})
        return out

    def to_dict(self) -> dict:
        d = {"id": self.id, "landmarks": list(self.names)}
        if self.ruler:
            d["ruler"] = [self.ruler[0], self.ruler[1], float(self.ruler[2])]
        return d


def _canonical(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


ISBI19 = Schema(
    "isbi19",
    (
        "sella", "nasion", "orbitale", "porion", "subspinale", "supramentale", "pogonion", "menton", "gnathion",
        "gonion", "lower_incisal_incision", "upper_incisal_incision", "upper_lip", "lower_lip", "subnasale",
        "soft_tissue_pogonion", "posterior_nasal_spine", "anterior_nasal_spine", "articulare",
    ),
    aliases=(("A-point", "subspinale"), ("B-point", "supramentale"), ("lower_incisor_tip", "lower_incisal_incision"),
             ("upper_incisor_tip", "upper_incisal_incision"), ("labrale_superius", "upper_lip"),
             ("labrale_inferius", "lower_lip"), ("PNS", "posterior_nasal_spine"), ("ANS", "anterior_nasal_spine")),
)

_AARIZ_NAMES = (
    "a_point", "anterior_nasal_spine", "b_point", "menton", "nasion", "orbitale", "pogonion",
    "posterior_nasal_spine", "pronasale", "ramus", "sella", "articulare", "condylion", "gnathion", "gonion",
    "porion", "lower_2nd_pm_cusp_tip", "lower_incisor_tip", "lower_molar_cusp_tip", "upper_2nd_pm_cusp_tip",
    "upper_incisor_apex", "upper_incisor_tip", "upper_molar_cusp_tip", "lower_incisor_apex", "labrale_inferius",
    "labrale_superius", "soft_tissue_nasion", "soft_tissue_pogonion", "subnasale",
)
_AARIZ_ALIASES = (("subspinale", "a_point"), ("supramentale", "b_point"), ("upper_lip", "labrale_superius"),
                  ("lower_lip", "labrale_inferius"), ("A", "a_point"), ("B", "b_point"), ("ANS", "anterior_nasal_spine"),
                  ("PNS", "posterior_nasal_spine"), ("upper_incisal_incision", "upper_incisor_tip"),
                  ("lower_incisal_incision", "lower_incisor_tip"))
AARIZ29 = Schema("aariz29", _AARIZ_NAMES, aliases=_AARIZ_ALIASES)
# The distance between P1 and P2 is a property of the cephalostat's ruler; 10 mm is the common marking interval.
CEPH31 = Schema("ceph31", _AARIZ_NAMES + ("ruler_p1", "ruler_p2"), ruler=("ruler_p1", "ruler_p2", 10.0),
                aliases=_AARIZ_ALIASES + (("P1", "ruler_p1"), ("P2", "ruler_p2")))

BUILTIN = {s.id: s for s in (ISBI19, AARIZ29, CEPH31)}


def get_schema(spec: Union[str, Path, Schema, dict]) -> Schema:
    """A schema from a built-in id (``isbi19``, ``aariz29``, ``ceph31``), a file path, a dict, or a Schema."""
    if isinstance(spec, Schema):
        return spec
    if isinstance(spec, dict):
        return schema_from_dict(spec, source="<dict>")
    if isinstance(spec, str) and spec in BUILTIN:
        return BUILTIN[spec]
    path = Path(spec)
    if not path.is_file():
        raise SchemaError(f"unknown schema {str(spec)!r}: not one of {sorted(BUILTIN)} and no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SchemaError(f"schema file {path}: cannot read it ({e})") from e
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"schema file {path}: not valid JSON ({e})") from e
        return schema_from_dict(data, source=str(path), default_id=path.stem)
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return Schema(path.stem, tuple(names))


def schema_from_dict(data: dict, source: str = "<dict>", default_id: Optional[str] = None) -> Schema:
    """Inverse of :meth:`Schema.to_dict`; a built-in id with the same landmarks returns the built-in schema."""
    if not isinstance(data, dict) or "landmarks" not in data:
        raise SchemaError(f"schema {source}: expected an object with a 'landmarks' list")
    names = data["landmarks"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SchemaError(f"schema {source}: 'landmarks' must be a list of names")
    sid = str(data.get("id") or default_id or "custom")
    ruler = data.get("ruler")
    if ruler is not None:
        if not (isinstance(ruler, (list, tuple)) and len(ruler) == 3):
            raise SchemaError(f"schema {source}: 'ruler' must be [name_a, name_b, distance_mm], got {ruler!r}")
        ruler = (str(ruler[0]), str(ruler[1]), float(ruler[2]))
    builtin = BUILTIN.get(sid)
    if builtin is not None and list(builtin.names) == names and builtin.ruler == ruler:
        return builtin
    return Schema(sid, tuple(names), ruler)
