"""Cephalometric landmark SDK: numpy + onnxruntime or OpenVINO; never imports torch.

>>> from sdk import Detector
>>> res = Detector()("ceph.jpg", spacing=0.1)
>>> res.xy, res.names, res.mm(), res.measurements()
"""
from .detector import Detector
from .errors import (
                     AnnotationError,
                     BackendError,
                     BatchError,
                     CephaloError,
                     ImageError,
                     ImageTooLarge,
                     ModelError,
                     SchemaError,
)
from .metadata import ModelMeta
from .result import LOW_CONFIDENCE, Landmarks
from .schemas import AARIZ29, CEPH31, ISBI19, Schema, get_schema
from .site import SiteError, SiteProfile, fit_site
from .spacing import check_spacing

__version__ = "0.1.0"
__all__ = ["Detector", "Landmarks", "LOW_CONFIDENCE", "check_spacing", "ModelMeta", "Schema", "get_schema", "ISBI19",
           "AARIZ29", "CEPH31", "CephaloError", "BatchError", "ImageError", "ModelError", "SchemaError",
           "AnnotationError", "BackendError", "ImageTooLarge", "SiteProfile", "SiteError", "fit_site"]
