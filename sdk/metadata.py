"""The model contract's metadata: what a model file says about itself (DESIGN.md).

Stored as one JSON document under the key ``cephalo`` in ONNX ``metadata_props`` and in OpenVINO ``rt_info``, so
both runtimes read identical facts. A file without it is refused: the Detector takes nothing from its caller that
the file should say.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Tuple

from .decode import DECODERS
from .errors import ModelError
from .schemas import Schema, schema_from_dict

META_KEY = "cephalo"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelMeta:
    """Facts of one model file. Sizes in pixels; ``sigma`` in heatmap pixels; ``mean``/``std`` on the [0, 1] scale."""

    schema: Schema
    input_h: int
    input_w: int
    channels: int
    mean: float
    std: float
    pad_value: float
    heatmap_stride: int
    sigma: float
    decoder: str = "dark"
    trained_on: str = ""
    accuracy: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)   # precision, licence, recipe, model card...
    format_version: int = FORMAT_VERSION

    @property
    def input_hw(self) -> Tuple[int, int]:
        return (self.input_h, self.input_w)

    @property
    def preprocessing(self):
        """The :class:`sdk.preprocess.Preprocessing` this model's inputs are made with."""
        from .preprocess import Preprocessing

        return Preprocessing(self.input_hw, self.channels, self.mean, self.std, self.pad_value,
                             **self.extra.get("preprocessing", {}))

    def to_json(self) -> str:
        d = asdict(self)
        d["schema"] = self.schema.to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelMeta":
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ModelError(f"model {source}: its '{META_KEY}' metadata is not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise ModelError(f"model {source}: its '{META_KEY}' metadata is not an object")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(f"model {source}: metadata format version {version!r}, this SDK reads {FORMAT_VERSION}")
        required = ("schema", "input_h", "input_w", "channels", "mean", "std", "pad_value", "heatmap_stride", "sigma")
        missing = [k for k in required if k not in d]
        if missing:
            raise ModelError(f"model {source}: metadata lacks {missing}")
        try:
            meta = cls(schema=schema_from_dict(d["schema"], source), input_h=int(d["input_h"]),
                       input_w=int(d["input_w"]), channels=int(d["channels"]), mean=float(d["mean"]),
                       std=float(d["std"]), pad_value=float(d["pad_value"]),
                       heatmap_stride=int(d["heatmap_stride"]), sigma=float(d["sigma"]),
                       decoder=str(d.get("decoder", "dark")), trained_on=str(d.get("trained_on", "")),
                       accuracy=dict(d.get("accuracy") or {}), extra=dict(d.get("extra") or {}))
        except (TypeError, ValueError) as e:
            raise ModelError(f"model {source}: malformed metadata ({e})") from e
        if meta.decoder not in DECODERS:
            raise ModelError(f"model {source}: decoder {meta.decoder!r} is not one of {DECODERS}")
        if min(meta.input_h, meta.input_w, meta.channels, meta.heatmap_stride) < 1 or meta.std <= 0 or meta.sigma <= 0:
            raise ModelError(f"model {source}: metadata values out of range: {d}")
        return meta


def missing_metadata_error(source: str) -> ModelError:
    return ModelError(f"model {source} has no '{META_KEY}' metadata: it was not exported by 'cephalo convert', "
                      f"so its input size, normalisation and landmarks are unknown")
